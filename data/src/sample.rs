//! `jobfleet sample-data`: a deterministic synthetic basketball dataset.
//!
//! Player game logs: `game_id`, `player_id`, `position` (G, F, C), `home`, `rest_days`,
//! `opponent_strength` (0–1), `minutes`, `points`, `rebounds`, `assists`, `fg_pct`,
//! `three_pct`, and `win`. Whether the player's team won is drawn from a logistic model
//! of the line (points, assists, rebounds, home court, rest, the opponent), so a
//! classifier has something real to find and cannot be perfect. About one row in 200 is
//! broken on purpose (negative minutes, text for points, an unknown position, a missing
//! player), for ingest's quarantine to catch. The same rows and seed give the same bytes.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::model::{sigmoid, splitmix64};
use crate::schema::{ColumnSpec, ColumnType, Schema};

/// The files `write` made.
#[derive(Clone, Debug)]
pub struct SampleFiles {
    /// The game logs.
    pub csv: PathBuf,
    /// Their schema, as ingest takes it (`schema_ref`).
    pub schema: PathBuf,
    /// Rows written.
    pub rows: usize,
    /// Rows broken on purpose.
    pub broken: usize,
}

/// A SplitMix64 stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        let x = (self.next() >> 11) as f64;
        x / (1u64 << 53) as f64
    }

    /// Roughly normal (Irwin–Hall of 4), mean 0, sd 1.
    fn normal(&mut self) -> f64 {
        let sum: f64 = (0..4).map(|_| self.unit()).sum();
        (sum - 2.0) / (4.0f64 / 12.0).sqrt()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The dataset's schema.
pub fn schema() -> Schema {
    let col = |name: &str, kind, min: Option<f64>, max: Option<f64>| ColumnSpec {
        name: name.into(),
        kind,
        nullable: false,
        min,
        max,
        categories: None,
    };
    Schema {
        columns: vec![
            col("game_id", ColumnType::String, None, None),
            col("player_id", ColumnType::String, None, None),
            ColumnSpec {
                categories: Some(vec!["G".into(), "F".into(), "C".into()]),
                ..col("position", ColumnType::String, None, None)
            },
            col("home", ColumnType::Bool, None, None),
            col("rest_days", ColumnType::Int, Some(0.0), Some(10.0)),
            col("opponent_strength", ColumnType::Float, Some(0.0), Some(1.0)),
            col("minutes", ColumnType::Float, Some(0.0), Some(60.0)),
            col("points", ColumnType::Int, Some(0.0), Some(100.0)),
            col("rebounds", ColumnType::Int, Some(0.0), Some(40.0)),
            col("assists", ColumnType::Int, Some(0.0), Some(30.0)),
            ColumnSpec {
                nullable: true,
                ..col("fg_pct", ColumnType::Float, Some(0.0), Some(1.0))
            },
            ColumnSpec {
                nullable: true,
                ..col("three_pct", ColumnType::Float, Some(0.0), Some(1.0))
            },
            col("win", ColumnType::Bool, None, None),
        ],
    }
}

/// Writes `rows` game-log rows as `games.csv` and their schema as `games.schema.json`
/// into `dir`.
pub fn write(dir: &Path, rows: usize, seed: u64) -> Result<SampleFiles, DataError> {
    let io = |e: std::io::Error| DataError::Io(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let csv = dir.join("games.csv");
    let schema_path = dir.join("games.schema.json");
    let schema_json =
        serde_json::to_vec_pretty(&schema()).map_err(|e| DataError::Io(format!("schema: {e}")))?;
    std::fs::write(&schema_path, schema_json).map_err(io)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).map_err(io)?);
    writeln!(
        out,
        "game_id,player_id,position,home,rest_days,opponent_strength,minutes,points,\
         rebounds,assists,fg_pct,three_pct,win"
    )
    .map_err(io)?;
    let mut rng = Rng(seed);
    let mut broken = 0;
    let mut line = String::new();
    for i in 0..rows {
        if game_row(&mut rng, i, &mut line) {
            broken += 1;
        }
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(SampleFiles {
        csv,
        schema: schema_path,
        rows,
        broken,
    })
}

/// Draws row `i` of the game logs (a line of game `i / 10`) into `line`; true if it was
/// broken on purpose.
fn game_row(rng: &mut Rng, i: usize, line: &mut String) -> bool {
    line.clear();
    let player = rng.below(150);
    let position = ["G", "F", "C"][usize::try_from(player % 3).unwrap_or(0)];
    let home = rng.unit() < 0.5;
    let rest = rng.below(5);
    let opponent = rng.unit();
    let minutes = (28.0 + 8.0 * rng.normal()).clamp(4.0, 48.0);
    let per_minute = 0.45 + 0.12 * rng.normal();
    let points = (minutes * per_minute.max(0.05) + 2.0 * rng.normal())
        .round()
        .max(0.0);
    let rebounds = (minutes / 48.0 * if position == "C" { 11.0 } else { 6.0 } + 2.0 * rng.normal())
        .round()
        .max(0.0);
    let assists = (minutes / 48.0 * if position == "G" { 8.0 } else { 3.0 } + 1.5 * rng.normal())
        .round()
        .max(0.0);
    let fg = (0.46 + 0.08 * rng.normal()).clamp(0.1, 0.9);
    let three = (0.35 + 0.1 * rng.normal()).clamp(0.0, 0.8);
    let logit = 0.06 * (points - 14.0)
        + 0.12 * (assists - 3.0)
        + 0.08 * (rebounds - 5.0)
        + 0.45 * f64::from(u8::from(home))
        + 0.12 * (f64::from(u32::try_from(rest).unwrap_or(0)) - 2.0)
        - 3.0 * (opponent - 0.5)
        + 2.5 * (fg - 0.46);
    let win = rng.unit() < sigmoid(logit);
    // Some shooting figures are missing, as in real box scores (no attempts).
    let fg_text = if rng.below(50) == 0 {
        String::new()
    } else {
        format!("{fg:.3}")
    };
    let game = i / 10;
    let _ = write!(
        line,
        "g{game:07},p{player:03},{position},{home},{rest},{opponent:.3},{minutes:.1},\
         {points},{rebounds},{assists},{fg_text},{three:.3},{win}"
    );
    let broken = rng.below(200) == 0;
    if broken {
        *line = match rng.below(4) {
            0 => line.replacen(&format!(",{minutes:.1},"), ",-5.0,", 1),
            1 => line.replacen(&format!(",{points},{rebounds},"), ",DNP,0,", 1),
            2 => line.replacen(&format!(",{position},"), ",Q,", 1),
            _ => line.replacen(&format!(",p{player:03},"), ",,", 1),
        };
    }
    broken
}

/// The numeric table of the data benchmarks: `id` (text), `x0`…`x{features-1}` (floats,
/// about normal) and `label` (a boolean drawn from a logistic model of the features).
/// The same arguments give the same rows.
pub struct Numeric {
    /// Feature columns.
    pub features: usize,
    /// The generator's seed.
    pub seed: u64,
}

impl Numeric {
    /// Its schema.
    pub fn schema(&self) -> Schema {
        let col = |name: String, kind| ColumnSpec {
            name,
            kind,
            nullable: false,
            min: None,
            max: None,
            categories: None,
        };
        let mut columns = vec![col("id".into(), ColumnType::String)];
        columns.extend((0..self.features).map(|i| col(format!("x{i}"), ColumnType::Float)));
        columns.push(col("label".into(), ColumnType::Bool));
        Schema { columns }
    }

    /// Row `i`: its id, features and label.
    fn values(&self, i: u64) -> (String, Vec<f64>, bool) {
        let mut rng = Rng(self.seed ^ splitmix64(i));
        let mut z = 0.0;
        let xs: Vec<f64> = (0..self.features)
            .map(|f| {
                let x = rng.normal();
                let weight = if f % 2 == 0 { 0.5 } else { -0.3 } / (1.0 + f as f64 / 10.0);
                z += weight * x;
                // Six decimals, as the CSV has them: both files hold the same numbers.
                (x * 1e6).round() / 1e6
            })
            .collect();
        (format!("r{i:010}"), xs, rng.unit() < sigmoid(z))
    }

    fn row(&self, i: u64, out: &mut String) {
        let (id, xs, label) = self.values(i);
        out.push_str(&id);
        for x in xs {
            let _ = write!(out, ",{x:.6}");
        }
        let _ = write!(out, ",{label}");
    }

    /// Writes `rows` rows as Parquet to `path`, `chunk_rows` at a time (memory stays
    /// bounded).
    pub fn write_parquet(
        &self,
        path: &Path,
        rows: u64,
        chunk_rows: usize,
    ) -> Result<(), DataError> {
        use crate::schema::{Batcher, Value};
        let schema = self.schema();
        let mut writer = crate::parquet_out::create(path, schema.arrow(), chunk_rows)?;
        let mut batcher = Batcher::new(&schema);
        for i in 0..rows {
            let (id, xs, label) = self.values(i);
            let mut row = Vec::with_capacity(xs.len() + 2);
            row.push(Value::Str(id));
            row.extend(xs.into_iter().map(Value::Float));
            row.push(Value::Bool(label));
            batcher.push(row);
            if batcher.rows() >= chunk_rows {
                writer.write(&batcher.finish()?)?;
            }
        }
        if batcher.rows() > 0 {
            writer.write(&batcher.finish()?)?;
        }
        writer.close()?;
        Ok(())
    }

    /// Writes `rows` rows as CSV with a header to `path`.
    pub fn write_csv(&self, path: &Path, rows: u64) -> Result<(), DataError> {
        let io = |e: std::io::Error| DataError::Io(format!("{}: {e}", path.display()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        let names: Vec<String> = self.schema().columns.into_iter().map(|c| c.name).collect();
        writeln!(out, "{}", names.join(",")).map_err(io)?;
        let mut line = String::new();
        for i in 0..rows {
            line.clear();
            self.row(i, &mut line);
            writeln!(out, "{line}").map_err(io)?;
        }
        out.flush().map_err(io)
    }
}
