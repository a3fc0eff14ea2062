//! `jobfleet enqueue --file`: jobs in their JSON form, one per line (blank lines skipped),
//! published in batches with `enqueue_many`.
//!
//! Each batch is decoded and validated as a whole before any of it is published, off the
//! async executor; a bad line stops the run with its number and the reason, and nothing
//! from its batch goes out. Batches before it have been published and are counted.

use std::path::{Path, PathBuf};

use jobfleet_common::codec;
use jobfleet_common::limits::Limits;
use jobfleet_common::Job;
use jobfleet_producer::Producer;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::error::{Error, Result};
use crate::progress::{Mode, Progress};

/// Jobs per `enqueue_many` call.
pub const BATCH: usize = 500;

/// One non-blank line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Its number in the file, from 1.
    pub number: usize,
    /// Its text.
    pub text: String,
}

/// A line that is not a valid job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// Its number in the file, from 1.
    pub number: usize,
    /// The decode or validation error.
    pub reason: String,
}

/// Decodes and validates every line of a batch, or names the first bad one.
pub fn decode_batch(lines: &[Line], limits: &Limits, now_ms: i64) -> Result<Vec<Job>, LineError> {
    lines
        .iter()
        .map(|line| {
            let bad = |reason: String| LineError {
                number: line.number,
                reason,
            };
            let job = codec::decode(line.text.as_bytes(), None).map_err(|e| bad(e.to_string()))?;
            limits
                .validate(&job, now_ms)
                .map_err(|e| bad(e.to_string()))?;
            Ok(job)
        })
        .collect()
}

/// What a file enqueue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    /// Jobs published.
    pub enqueued: usize,
    /// Jobs that were duplicates of unfinished jobs with the same unique key.
    pub duplicates: usize,
    /// Jobs published to wait for their run time.
    pub delayed: usize,
}

/// Enqueues every job in `path`.
pub async fn enqueue_file(
    path: &Path,
    producer: &Producer,
    limits: &Limits,
    mode: Mode,
) -> Result<FileReport> {
    let read_error = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let total = count_jobs(path.to_path_buf()).await?;
    let file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let mut lines = BufReader::new(file).lines();
    let mut progress = Progress::new(mode, "jobs", total as u64);
    let mut report = FileReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut number = 0;
    loop {
        let next = lines.next_line().await.map_err(read_error)?;
        let at_end = next.is_none();
        if let Some(text) = next {
            number += 1;
            if !text.trim().is_empty() {
                batch.push(Line { number, text });
            }
        }
        if batch.len() >= BATCH || (at_end && !batch.is_empty()) {
            let result = publish(std::mem::take(&mut batch), producer, limits, &mut report).await;
            if let Err(e) = result {
                progress.finish();
                return Err(e);
            }
            progress.update(
                report.enqueued as u64,
                &format!("{} enqueued", report.enqueued),
            );
        }
        if at_end {
            progress.finish();
            return Ok(report);
        }
    }
}

async fn publish(
    lines: Vec<Line>,
    producer: &Producer,
    limits: &Limits,
    report: &mut FileReport,
) -> Result<()> {
    let lines_span: Vec<usize> = lines.iter().map(|l| l.number).collect();
    let (limits, now) = (limits.clone(), producer.now_ms());
    let decoded = tokio::task::spawn_blocking(move || decode_batch(&lines, &limits, now))
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
    let jobs = decoded.map_err(|e| Error::BadLine {
        line: e.number,
        reason: e.reason,
        published: report.enqueued,
    })?;
    let (first_line, last_line) = (
        lines_span.first().copied().unwrap_or_default(),
        lines_span.last().copied().unwrap_or_default(),
    );
    let answers = producer
        .enqueue_many(jobs)
        .await
        .map_err(|source| Error::BatchNotConfirmed {
            confirmed: report.enqueued,
            lines: (first_line, last_line),
            source,
        })?;
    for enqueued in answers {
        report.enqueued += 1;
        report.duplicates += usize::from(enqueued.duplicate);
        report.delayed += usize::from(enqueued.delayed);
    }
    Ok(())
}

/// Non-blank lines in the file, for the progress bar's length; read off the executor.
async fn count_jobs(path: PathBuf) -> Result<usize> {
    let counted = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let file = std::fs::File::open(&path).map_err(|source| (path.clone(), source))?;
        let mut n = 0;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|source| (path.clone(), source))?;
            n += usize::from(!line.trim().is_empty());
        }
        Ok::<_, (PathBuf, std::io::Error)>(n)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?;
    counted.map_err(|(path, source)| Error::Read { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[&str]) -> Vec<Line> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Line {
                number: i + 1,
                text: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_good_batch_decodes_every_line() {
        let batch = lines(&[
            r#"{"v":1,"id":"01890a5d-ac96-774b-bcce-b302099a8057","queue":"q","kind":"echo","payload":{"n":1}}"#,
            r#"{"v":1,"id":"01890a5d-ac96-774b-bcce-b302099a8058","queue":"q","kind":"sleep","payload":{"ms":5},"priority":9}"#,
        ]);
        let jobs = decode_batch(&batch, &Limits::default(), 0).expect("valid");
        assert_eq!(jobs.len(), 2);
        assert_eq!(&jobs[0].payload[..], br#"{"n":1}"#);
        assert_eq!(jobs[1].priority.level(), 9);
    }

    #[test]
    fn the_first_bad_line_is_named_with_its_reason() {
        let batch = lines(&[
            r#"{"v":1,"id":"01890a5d-ac96-774b-bcce-b302099a8057","queue":"q","kind":"echo"}"#,
            r#"{"v":1,"id":"01890a5d-ac96-774b-bcce-b302099a8058","queue":"q","kind":"echo","priority":12}"#,
            "not json",
        ]);
        let e = decode_batch(&batch, &Limits::default(), 0).expect_err("invalid");
        assert_eq!(e.number, 2);
        assert!(e.reason.contains("priority"), "{}", e.reason);
        let e = decode_batch(&batch[2..], &Limits::default(), 0).expect_err("garbage");
        assert_eq!(e.number, 3);
        assert!(e.reason.contains("not a jobfleet envelope"), "{}", e.reason);
        let e = decode_batch(
            &lines(&[r#"{"v":1,"id":"01890a5d-ac96-774b-bcce-b302099a8059","kind":"echo"}"#]),
            &Limits::default(),
            0,
        )
        .expect_err("no queue");
        assert!(e.reason.contains("queue"), "{}", e.reason);
    }

    #[tokio::test]
    async fn counting_skips_blank_lines_and_names_missing_files() {
        let dir = std::env::temp_dir().join(format!("jobfleet-jsonl-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("jobs.jsonl");
        std::fs::write(&path, "{}\n\n  \n{}\n{}").expect("write");
        assert_eq!(count_jobs(path.clone()).await.expect("counted"), 3);
        let missing = dir.join("missing.jsonl");
        let e = count_jobs(missing).await.expect_err("missing");
        assert!(e.to_string().contains("missing.jsonl"), "{e}");
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
