//! `jobfleet sample-data`: writes the deterministic synthetic basketball game logs
//! (`games.csv`) and their schema (`games.schema.json`) that the data kinds' examples,
//! `jobfleet dev`'s demo and the tests use.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};

/// Flags of `jobfleet sample-data`.
#[derive(Clone, Debug, Args)]
pub struct SampleDataArgs {
    /// Rows of game logs to write (about one in 200 is broken on purpose).
    #[arg(long, default_value_t = 10_000)]
    pub rows: usize,
    /// The directory to write `games.csv` and `games.schema.json` into (created).
    #[arg(long)]
    pub out: PathBuf,
    /// The generator's seed: the same rows and seed give the same bytes.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Runs the command: writes the files and prints where, with a command to ingest them.
pub async fn run(args: SampleDataArgs) -> Result<()> {
    let out = args.out.clone();
    let files = tokio::task::spawn_blocking(move || {
        jobfleet_data::sample::write(&args.out, args.rows, args.seed)
    })
    .await
    .map_err(|e| Error::Task(format!("sample-data stopped: {e}")))??;
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    println!(
        "wrote {} rows ({} broken on purpose) to {}\nschema in {}\n\ningest them with:\n  \
         jobfleet run ingest --payload '{{\"dataset\":\"games\",\"source\":\"{}\",\"schema_ref\":\"{}\"}}'",
        files.rows,
        files.broken,
        absolute(&files.csv).display(),
        absolute(&files.schema).display(),
        absolute(&files.csv).display(),
        absolute(&files.schema).display(),
    );
    let _ = out;
    Ok(())
}
