//! OpenTelemetry export of job spans over OTLP/HTTP: the `otel` feature, used when
//! `log.otlp_endpoint` is set.
//!
//! The exporter batches spans on its own thread and sends them to
//! `<log.otlp_endpoint>/v1/traces` as `log.otlp_protocol` says. The standard
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_BSP_*` variables apply;
//! the service name is `jobfleet-worker` unless `OTEL_SERVICE_NAME` says otherwise.

use jobfleet_common::config::{ConfigError, LogConfig};
use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// A layer for the process's subscriber.
pub type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// Flushes the exporter's last spans and stops it when dropped: keep it for as long as
/// the process runs.
#[must_use = "the exporter stops, and its last spans are lost, when the guard is dropped"]
#[derive(Default)]
pub struct OtelGuard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelGuard").finish_non_exhaustive()
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("jobfleet: flushing spans to the OTLP collector failed: {e}");
            }
        }
    }
}

/// Installs the process's subscriber: `lines` (how log lines are written), span export
/// when `spans` (a service's log settings) names an endpoint, and `filter` over both.
/// Keep the guard until the process ends. A second call keeps the first subscriber.
pub fn install(
    filter: EnvFilter,
    lines: BoxedLayer<Registry>,
    spans: Option<&LogConfig>,
) -> Result<OtelGuard, ConfigError> {
    let (otel, guard) = match spans {
        Some(log) => layer(log)?,
        None => (None, OtelGuard::default()),
    };
    // Err means a subscriber is already installed (tests): keep it.
    let _ = tracing_subscriber::registry()
        .with(lines)
        .with(otel)
        .with(filter)
        .try_init();
    Ok(guard)
}

/// The layer exporting spans to `log.otlp_endpoint`, or none when it is unset. An
/// endpoint in a build without the `otel` feature is a configuration error.
pub fn layer<S>(log: &LogConfig) -> Result<(Option<BoxedLayer<S>>, OtelGuard), ConfigError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let Some(endpoint) = &log.otlp_endpoint else {
        return Ok((None, OtelGuard::default()));
    };
    export(endpoint, log)
}

#[cfg(not(feature = "otel"))]
fn export<S>(
    _endpoint: &str,
    _log: &LogConfig,
) -> Result<(Option<BoxedLayer<S>>, OtelGuard), ConfigError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    Err(ConfigError {
        key: "log.otlp_endpoint".into(),
        reason: "this build leaves out OpenTelemetry export: rebuild jobfleet-worker with the \
                 cargo feature `otel` (the jobfleet binary has it by default)"
            .into(),
    })
}

#[cfg(feature = "otel")]
fn export<S>(
    endpoint: &str,
    log: &LogConfig,
) -> Result<(Option<BoxedLayer<S>>, OtelGuard), ConfigError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    use jobfleet_common::config::OtlpProtocol;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;

    let protocol = match log.otlp_protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    // The exporter's HTTP client is reqwest's; a build where reqwest also has rustls (the
    // data kinds' object store clients) makes every reqwest client set up TLS, which
    // panics without a process-wide provider: ring, the one provider this build has (one
    // installed first is kept). The endpoint itself is plain http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| ConfigError {
            key: "log.otlp_endpoint".into(),
            reason: format!("cannot export to {endpoint:?}: {e}"),
        })?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("jobfleet-worker");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("jobfleet");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((
        Some(Box::new(layer)),
        OtelGuard {
            provider: Some(provider),
        },
    ))
}

/// Makes `span` a child of the job's trace context, and returns the span's own context
/// when a layer is exporting it (`None` otherwise: nothing installed, or filtered out).
#[cfg(feature = "otel")]
pub(crate) fn join(
    span: &tracing::Span,
    trace: Option<&jobfleet_common::job::TraceContext>,
) -> Option<jobfleet_common::trace::TraceParent> {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if let Some(trace) = trace {
        let carrier = std::collections::HashMap::from([
            ("traceparent".to_string(), trace.traceparent.clone()),
            ("tracestate".to_string(), trace.tracestate.clone()),
        ]);
        // Err: no OpenTelemetry layer sees this span; the ids below say so too.
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid().then(|| jobfleet_common::trace::TraceParent {
        trace_id: own.trace_id().to_bytes(),
        parent_id: own.span_id().to_bytes(),
        flags: own.trace_flags().to_u8(),
    })
}
