//! One fit of an algorithm: the preprocessing and the model fitted on the training rows,
//! measured on the test rows and on the training rows. The models are scikit-learn's of
//! the same name (see [`crate::train`]).

use std::collections::BTreeMap;

use linfa::prelude::*;
use linfa_linalg::cholesky::SolveC;
use ndarray::{Array1, Array2, Axis};

use crate::error::DataError;
use crate::manifest::Algorithm;
use crate::metrics::{self, Metrics};
use crate::model::{self, Feature, Frame};
use crate::schema::ColumnType;

/// The rows a model learns from: the frame, its target and features.
pub(super) struct Labelled<'a> {
    /// The rows read.
    pub(super) frame: &'a Frame,
    /// The target column.
    pub(super) target: &'a model::Column,
    /// Its type.
    pub(super) kind: ColumnType,
    /// The feature columns.
    pub(super) features: &'a [String],
    /// The target's name.
    pub(super) name: &'a str,
}

/// One fit: preprocessing and model on `train`, measured on `test` and on `train`.
pub(super) struct Fitted {
    /// For classification, the two classes, sorted.
    pub(super) classes: Option<Vec<String>>,
    /// The preprocessing fitted.
    pub(super) features: Vec<Feature>,
    /// One weight per matrix column.
    pub(super) coefficients: Array1<f64>,
    /// The intercept.
    pub(super) intercept: f64,
    /// Measured on the test rows.
    pub(super) test: Metrics,
    /// Measured on the training rows.
    pub(super) training: Metrics,
}

/// The hyper-parameters an algorithm uses when the payload leaves them out.
pub(super) fn defaults(algorithm: Algorithm) -> BTreeMap<String, f64> {
    let pairs: &[(&str, f64)] = match algorithm {
        Algorithm::LogisticRegression => &[("c", 1.0), ("max_iterations", 1000.0)],
        Algorithm::LinearRegression => &[],
        Algorithm::Ridge => &[("alpha", 1.0)],
    };
    pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

/// The rows of one fit, and their matrices under the preprocessing fitted on `train`.
struct Split<'a> {
    train: &'a [usize],
    test: &'a [usize],
    x_train: &'a Array2<f64>,
    x_test: &'a Array2<f64>,
}

/// Fits `algorithm` with `params` on rows `train` of `data`, measured on `test` and on
/// `train`.
pub(super) fn fit_split(
    algorithm: Algorithm,
    params: &BTreeMap<String, f64>,
    data: &Labelled<'_>,
    train: &[usize],
    test: &[usize],
) -> Result<Fitted, DataError> {
    let param = |k: &str| params.get(k).copied().unwrap_or(1.0);
    let encoded = model::fit_features(data.frame, data.features, train);
    let (x_train, _) = model::transform(&encoded, data.frame, train)?;
    let (x_test, _) = model::transform(&encoded, data.frame, test)?;
    let split = Split {
        train,
        test,
        x_train: &x_train,
        x_test: &x_test,
    };
    match algorithm {
        Algorithm::LogisticRegression => {
            fit_classifier(data, &split, encoded, param("c"), param("max_iterations"))
        }
        Algorithm::Ridge => {
            fit_regressor(data, &split, encoded, |x, y| ridge(x, y, param("alpha")))
        }
        Algorithm::LinearRegression => fit_regressor(data, &split, encoded, least_squares),
    }
}

/// Logistic regression on the split: its classes, weights, and metrics.
fn fit_classifier(
    data: &Labelled<'_>,
    split: &Split<'_>,
    encoded: Vec<Feature>,
    c: f64,
    iterations: f64,
) -> Result<Fitted, DataError> {
    let (target, kind) = (data.target, data.kind);
    let classes = classes(data.frame, data.name, kind, split.train)?;
    let y = |rows: &[usize]| -> Vec<bool> {
        rows.iter()
            .map(|&i| target.label(i, kind).as_deref() == Some(&classes[1]))
            .collect()
    };
    let (w, b) = logistic(split.x_train, &y(split.train), c, iterations)?;
    let measure = |x: &Array2<f64>, rows: &[usize]| -> Result<Metrics, DataError> {
        let p: Vec<f64> = model::linear(x, &w, b)
            .iter()
            .map(|&z| model::sigmoid(z))
            .collect();
        Ok(metrics::classification(&y(rows), &p))
    };
    Ok(Fitted {
        test: measure(split.x_test, split.test)?,
        training: measure(split.x_train, split.train)?,
        classes: Some(classes),
        features: encoded,
        coefficients: w,
        intercept: b,
    })
}

/// A regression on the split, solved by `solve` (least squares or ridge).
fn fit_regressor(
    data: &Labelled<'_>,
    split: &Split<'_>,
    encoded: Vec<Feature>,
    solve: impl Fn(&Array2<f64>, &[f64]) -> Result<(Array1<f64>, f64), DataError>,
) -> Result<Fitted, DataError> {
    let target = data.target;
    let numbers = |rows: &[usize]| -> Result<Vec<f64>, DataError> {
        rows.iter()
            .map(|&i| match target {
                model::Column::Num(v) => {
                    v[i].ok_or_else(|| DataError::Corrupt("an unlabelled row was kept".into()))
                }
                model::Column::Cat(_) => Err(DataError::invalid(
                    "target",
                    "regression needs a numeric target",
                )),
            })
            .collect()
    };
    let (w, b) = solve(split.x_train, &numbers(split.train)?)?;
    let measure = |x: &Array2<f64>, rows: &[usize]| -> Result<Metrics, DataError> {
        let p = model::linear(x, &w, b).to_vec();
        Ok(metrics::regression(&numbers(rows)?, &p))
    };
    Ok(Fitted {
        test: measure(split.x_test, split.test)?,
        training: measure(split.x_train, split.train)?,
        classes: None,
        features: encoded,
        coefficients: w,
        intercept: b,
    })
}

/// The two classes of the target in the training rows, sorted.
fn classes(
    frame: &Frame,
    target: &str,
    kind: ColumnType,
    train: &[usize],
) -> Result<Vec<String>, DataError> {
    let column = frame
        .column(target)
        .ok_or_else(|| DataError::invalid("target", "missing"))?;
    let mut classes: Vec<String> = train
        .iter()
        .filter_map(|&i| column.label(i, kind))
        .collect();
    classes.sort();
    classes.dedup();
    if classes.len() != 2 {
        return Err(DataError::Rejected(format!(
            "logistic_regression needs exactly two classes in the target; the training \
             rows have {}: {:?}",
            classes.len(),
            classes.iter().take(5).collect::<Vec<_>>()
        )));
    }
    Ok(classes)
}

/// Binary logistic regression, L2-penalised as scikit-learn's: weights and intercept.
fn logistic(
    x: &Array2<f64>,
    y: &[bool],
    c: f64,
    iterations: f64,
) -> Result<(Array1<f64>, f64), DataError> {
    let targets = Array1::from(y.to_vec());
    let data = Dataset::new(x.clone(), targets);
    let fitted = linfa_logistic::LogisticRegression::default()
        .alpha(1.0 / c)
        // scikit-learn stops L-BFGS at a gradient of `tol` = 1e-4 on the mean loss; this
        // loss is the sum, whose gradient is n times larger.
        .gradient_tolerance(1e-4 * y.len().max(1) as f64)
        .max_iterations(iterations as u64)
        .fit(&data)
        .map_err(|e| DataError::Rejected(format!("logistic regression did not fit: {e}")))?;
    // linfa's positive class is the first one it saw; the registry's is `true`.
    if fitted.labels().pos.class {
        Ok((fitted.params().clone(), fitted.intercept()))
    } else {
        Ok((-fitted.params(), -fitted.intercept()))
    }
}

/// Ordinary least squares with an intercept: weights and intercept.
fn least_squares(x: &Array2<f64>, y: &[f64]) -> Result<(Array1<f64>, f64), DataError> {
    let data = Dataset::new(x.clone(), Array1::from(y.to_vec()));
    let fitted = linfa_linear::LinearRegression::new()
        .fit(&data)
        .map_err(|e| DataError::Rejected(format!("linear regression did not fit: {e}")))?;
    Ok((fitted.params().clone(), fitted.intercept()))
}

/// Ridge in closed form on centred data: `(XcᵀXc + αI) w = Xcᵀyc`, `b = ȳ - x̄·w`.
fn ridge(x: &Array2<f64>, y: &[f64], alpha: f64) -> Result<(Array1<f64>, f64), DataError> {
    let y = Array1::from(y.to_vec());
    let x_mean = x
        .mean_axis(Axis(0))
        .ok_or_else(|| DataError::Rejected("no training rows".into()))?;
    let y_mean = y.mean().unwrap_or(0.0);
    let xc = x - &x_mean;
    let yc = &y - y_mean;
    let mut gram = xc.t().dot(&xc);
    for i in 0..gram.nrows() {
        gram[[i, i]] += alpha;
    }
    let rhs = xc.t().dot(&yc).insert_axis(Axis(1));
    let w = gram
        .solvec(&rhs)
        .map_err(|e| DataError::Rejected(format!("ridge did not solve: {e}")))?
        .column(0)
        .to_owned();
    let b = y_mean - x_mean.dot(&w);
    Ok((w, b))
}
