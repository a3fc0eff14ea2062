//! A small JSON Schema checker, enough for `docs/wire-format.schema.json`, so the wire
//! format tests need no validator dependency.

use serde_json::Value;

/// A small check of `value` against `schema`: the keywords the jobfleet schema uses
/// (`type`, `const`, `enum`, `required`, `properties`, `additionalProperties: false`,
/// `items`, `minimum`, `maximum`, `minLength`, `maxLength`). Enough to catch a null the
/// schema forbids or a bound the encoder breaks without a validator dependency.
pub fn conforms(schema: &Value, value: &Value) -> Result<(), String> {
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("bad type keyword {types}")),
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        // Every integer is also a JSON Schema number.
        let integer_as_number = actual == "integer" && allowed.contains(&"number");
        if !(allowed.contains(&actual) || integer_as_number) {
            return Err(format!("{value} is {actual}, schema allows {allowed:?}"));
        }
    }
    if schema.get("const").is_some_and(|c| c != value) {
        return Err(format!("{value} is not {}", schema["const"]));
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.contains(value) {
            return Err(format!("{value} is not one of {options:?}"));
        }
    }
    if let (Some(n), Some(min)) = (
        value.as_f64(),
        schema.get("minimum").and_then(Value::as_f64),
    ) {
        if n < min {
            return Err(format!("{value} < {min}"));
        }
    }
    if let (Some(n), Some(max)) = (
        value.as_f64(),
        schema.get("maximum").and_then(Value::as_f64),
    ) {
        if n > max {
            return Err(format!("{value} > {max}"));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|min| len < min)
            || schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|max| len > max)
        {
            return Err(format!("{value}: length {len} out of bounds"));
        }
    }
    if let Value::Object(fields) = value {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap_or_default();
            if !fields.contains_key(name) {
                return Err(format!("missing {name}"));
            }
        }
        for (name, field) in fields {
            match schema.get("properties").and_then(|p| p.get(name)) {
                Some(sub) => conforms(sub, field).map_err(|e| format!("{name}: {e}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{name} is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(item_schema, item).map_err(|e| format!("[{i}]: {e}"))?;
        }
    }
    Ok(())
}
