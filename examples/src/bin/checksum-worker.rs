//! A worker process that runs `checksum` jobs (and the built-in kinds), configured like
//! `jobfleet worker`: the file `JOBFLEET_CONFIG` names and `JOBFLEET_*` variables.
//!
//! ```text
//! JOBFLEET_BROKER=amqp://guest:guest@127.0.0.1:5672/%2f JOBFLEET_STORE=redis://127.0.0.1:6379/ \
//! JOBFLEET_WORKER__QUEUES='["files"]' cargo run -p jobfleet-examples --bin checksum-worker
//! jobfleet enqueue --queue files --kind checksum --payload '{"path": "/tmp/data.bin"}'
//! ```

use jobfleet_examples::{Checksum, KIND};
use jobfleet_worker::Worker;

#[tokio::main]
async fn main() -> Result<(), jobfleet_worker::Error> {
    let worker = Worker::from_env()?.with_builtins().handler(KIND, Checksum);
    let _spans = jobfleet_worker::init_logging(worker.config())?;
    worker.run_until_signal().await
}
