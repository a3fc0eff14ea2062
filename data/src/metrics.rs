//! How well a model does on a set of rows: the classification and regression metrics,
//! each with its value or, when the rows cannot give one, the reason.
//!
//! A metric the rows cannot give is `null`, never a made-up number: ROC AUC over rows of
//! one class, precision when no row was predicted positive, recall when no row is
//! positive, R² over a constant target. Its reason ([`Metrics::unavailable`]) is
//! published beside it in the model's manifest, so a `null` always says why.

use std::collections::BTreeMap;

/// The metrics of predictions on one set of rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Each metric's value; `None` when the rows cannot give it.
    pub values: BTreeMap<String, Option<f64>>,
    /// Why a metric has no value, by its name.
    pub unavailable: BTreeMap<String, String>,
}

impl Metrics {
    /// `name`'s value, if the rows gave one.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied().flatten()
    }

    /// `{"accuracy": 0.9, "roc_auc": null, …}`: every metric, `null` where it has none.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!(self.values)
    }

    /// Each metric's mean over the folds of a cross-validation; a metric that some fold
    /// cannot give has no mean, and its reason names such a fold by its place in
    /// `per_fold`.
    pub fn mean(per_fold: &[Metrics]) -> Metrics {
        let mut mean = Metrics::default();
        let names = per_fold.iter().flat_map(|m| m.values.keys()).cloned();
        for name in names.collect::<std::collections::BTreeSet<_>>() {
            let values: Vec<Option<f64>> = per_fold.iter().map(|m| m.get(&name)).collect();
            match values.iter().position(Option::is_none) {
                None => {
                    let sum: f64 = values.iter().flatten().sum();
                    mean.value(&name, sum / values.len().max(1) as f64);
                }
                Some(first) => {
                    let why = per_fold[first]
                        .unavailable
                        .get(&name)
                        .map_or("", String::as_str);
                    let missing = values.iter().filter(|v| v.is_none()).count();
                    mean.missing(
                        &name,
                        format!(
                            "{missing} of {} folds cannot give it, e.g. per_fold[{first}]: {why}",
                            values.len()
                        ),
                    );
                }
            }
        }
        mean
    }

    fn value(&mut self, name: &str, value: f64) {
        self.values.insert(name.to_owned(), Some(value));
    }

    fn missing(&mut self, name: &str, reason: impl Into<String>) {
        self.values.insert(name.to_owned(), None);
        self.unavailable.insert(name.to_owned(), reason.into());
    }

    /// Every metric of `names` missing for want of rows.
    fn no_rows(names: &[&str]) -> Self {
        let mut m = Metrics::default();
        for name in names {
            m.missing(name, "no rows to measure on");
        }
        m
    }
}

/// The classification metrics.
const CLASSIFICATION: [&str; 6] = [
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
];
/// The regression metrics.
const REGRESSION: [&str; 3] = ["rmse", "mae", "r2"];

/// Classification metrics of `p` (probabilities of the positive class) against `y`
/// (true for the positive class), at threshold 0.5: `accuracy`, `precision`, `recall`,
/// `f1`, `roc_auc`, `log_loss`.
pub fn classification(y: &[bool], p: &[f64]) -> Metrics {
    if y.is_empty() {
        return Metrics::no_rows(&CLASSIFICATION);
    }
    let (mut tp, mut fp, mut tn, mut fn_) = (0u64, 0u64, 0u64, 0u64);
    let mut log_loss = 0.0;
    for (&truth, &prob) in y.iter().zip(p) {
        match (truth, prob >= 0.5) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
            (true, false) => fn_ += 1,
        }
        let q = prob.clamp(1e-15, 1.0 - 1e-15);
        log_loss -= if truth { q.ln() } else { (1.0 - q).ln() };
    }
    let ratio = |a: u64, b: u64| a as f64 / b as f64;
    let mut m = Metrics::default();
    m.value("accuracy", ratio(tp + tn, tp + tn + fp + fn_));
    match tp + fp {
        0 => m.missing(
            "precision",
            "no row was predicted positive (probability ≥ 0.5)",
        ),
        predicted => m.value("precision", ratio(tp, predicted)),
    }
    match tp + fn_ {
        0 => m.missing("recall", "no row is of the positive class"),
        positives => m.value("recall", ratio(tp, positives)),
    }
    // 2PR / (P + R), written so that it is defined whenever either of them is.
    match 2 * tp + fp + fn_ {
        0 => m.missing(
            "f1",
            "no row is of the positive class and none was predicted positive",
        ),
        d => m.value("f1", ratio(2 * tp, d)),
    }
    match roc_auc(y, p) {
        Some(auc) => m.value("roc_auc", auc),
        None => {
            let class = if tp + fn_ == 0 {
                "negative"
            } else {
                "positive"
            };
            m.missing(
                "roc_auc",
                format!(
                    "all {} row(s) are of the {class} class: ROC AUC ranks positives \
                     against negatives and needs rows of both",
                    y.len()
                ),
            );
        }
    }
    m.value("log_loss", log_loss / y.len() as f64);
    m
}

/// Area under the ROC curve: the Mann–Whitney statistic, ties counted half; `None` when
/// `y` does not hold both classes.
pub fn roc_auc(y: &[bool], p: &[f64]) -> Option<f64> {
    let positives = y.iter().filter(|&&t| t).count();
    let negatives = y.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    // Average ranks (1-based) over ties.
    let mut ranks = vec![0.0; p.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for k in &order[i..=j] {
            ranks[*k] = rank;
        }
        i = j + 1;
    }
    let sum: f64 = y
        .iter()
        .zip(&ranks)
        .filter(|(t, _)| **t)
        .map(|(_, r)| r)
        .sum();
    let (pos, neg) = (positives as f64, negatives as f64);
    Some((sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Regression metrics of `p` against `y`: `rmse`, `mae`, `r2`.
pub fn regression(y: &[f64], p: &[f64]) -> Metrics {
    if y.is_empty() {
        return Metrics::no_rows(&REGRESSION);
    }
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let sse: f64 = y.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum();
    let sst: f64 = y.iter().map(|a| (a - mean).powi(2)).sum();
    let mut m = Metrics::default();
    m.value("rmse", (sse / n).sqrt());
    m.value(
        "mae",
        y.iter().zip(p).map(|(a, b)| (a - b).abs()).sum::<f64>() / n,
    );
    if sst == 0.0 {
        m.missing(
            "r2",
            format!(
                "the target is {mean} in all {} row(s): R² divides by its variance, which is 0",
                y.len()
            ),
        );
    } else {
        m.value("r2", 1.0 - sse / sst);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computed_values() {
        let y = [true, false, true, false];
        let p = [0.9, 0.4, 0.35, 0.1];
        let m = classification(&y, &p);
        assert_eq!(m.get("accuracy"), Some(0.75));
        assert_eq!(m.get("precision"), Some(1.0));
        assert_eq!(m.get("recall"), Some(0.5));
        assert!((m.get("f1").unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-12);
        // Positives ranked 4 and 2 of 4: (6 - 3) / (2 × 2).
        assert_eq!(m.get("roc_auc"), Some(0.75));
        assert!(m.unavailable.is_empty(), "{m:?}");
        let r = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]);
        assert!((r.get("rmse").unwrap_or(0.0) - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((r.get("r2").unwrap_or(0.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_metric_the_rows_cannot_give_is_null_with_its_reason() {
        // One negative row, predicted negative: no ROC AUC, precision, recall nor F1.
        let m = classification(&[false], &[0.2]);
        assert_eq!(m.get("accuracy"), Some(1.0));
        for name in ["precision", "recall", "f1", "roc_auc"] {
            assert_eq!(m.values.get(name), Some(&None), "{name}: {m:?}");
            assert!(m.unavailable.contains_key(name), "{name}: {m:?}");
        }
        assert_eq!(m.to_json()["roc_auc"], serde_json::Value::Null);
        assert!(
            m.unavailable["roc_auc"].contains("all 1 row(s) are of the negative class"),
            "{m:?}"
        );
        let r = regression(&[4.0, 4.0], &[4.0, 5.0]);
        assert_eq!(r.get("r2"), None);
        assert!(
            r.unavailable["r2"].contains("the target is 4 in all 2 row(s)"),
            "{r:?}"
        );
        let none = classification(&[], &[]);
        assert_eq!(none.unavailable.len(), CLASSIFICATION.len(), "{none:?}");
    }

    #[test]
    fn a_fold_mean_is_missing_where_a_fold_cannot_give_the_metric() {
        let both = classification(&[true, false], &[0.9, 0.1]);
        let one_class = classification(&[true, true], &[0.9, 0.8]);
        let mean = Metrics::mean(&[both.clone(), one_class, both]);
        assert_eq!(mean.get("accuracy"), Some(1.0));
        assert_eq!(mean.get("roc_auc"), None);
        let why = &mean.unavailable["roc_auc"];
        assert!(
            why.starts_with("1 of 3 folds cannot give it, e.g. per_fold[1]: all 2 row(s)"),
            "{why}"
        );
    }
}
