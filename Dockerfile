# syntax=docker/dockerfile:1
# The jobfleet binary in a small image. Build: docker build -t jobfleet .
# Run a role: docker run --rm -e JOBFLEET_BROKER=amqp://… -e JOBFLEET_STORE=redis://… jobfleet worker
# curl is in the runtime image for health checks against /readyz (docker-compose.yml).

ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build artefacts between builds; the binary is copied
# out because the target mount does not survive the RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jobfleet \
    && cp target/release/jobfleet /usr/local/bin/jobfleet

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home jobfleet
COPY --from=build /usr/local/bin/jobfleet /usr/local/bin/jobfleet
USER jobfleet
ENV JOBFLEET_LOG__FORMAT=json
ENTRYPOINT ["jobfleet"]
CMD ["worker"]
