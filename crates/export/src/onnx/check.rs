//! Structural self-check of an exported model, run before anything is written.
//!
//! Catches builder mistakes that onnxruntime would only report at load time on the user's machine: an
//! input used before it is produced, a value produced twice, an initializer whose bytes do not match its
//! shape, a declared graph output that nothing computes.

use std::collections::HashSet;

use super::proto::{dtype, ModelProto, TensorProto};

/// Checks that `model` is a well-formed opset-importing graph in topological order. The error names the
/// first offending node or value.
pub fn check_model(model: &ModelProto) -> Result<(), String> {
    if !model.opset_import.iter().any(|o| o.domain.is_empty()) {
        return Err("no opset_import for the default ONNX domain".into());
    }
    let graph = model.graph.as_ref().ok_or("model has no graph")?;
    let mut defined: HashSet<&str> = HashSet::new();
    for v in &graph.input {
        define(&mut defined, &v.name, "graph input")?;
    }
    for t in &graph.initializer {
        check_tensor(t)?;
        define(&mut defined, &t.name, "initializer")?;
    }
    for (i, node) in graph.node.iter().enumerate() {
        let what = format!("node {i} `{}` ({})", node.name, node.op_type);
        if node.op_type.is_empty() || node.output.is_empty() {
            return Err(format!("{what}: no op_type or no output"));
        }
        // An empty input name is ONNX's "optional input left out", not a reference.
        if let Some(missing) = node
            .input
            .iter()
            .find(|n| !n.is_empty() && !defined.contains(n.as_str()))
        {
            return Err(format!(
                "{what}: input `{missing}` is not defined before it"
            ));
        }
        for out in &node.output {
            if out.is_empty() {
                return Err(format!("{what}: unnamed output"));
            }
            define(&mut defined, out, &what)?;
        }
    }
    for out in &graph.output {
        if !defined.contains(out.name.as_str()) {
            return Err(format!("graph output `{}` is not computed", out.name));
        }
    }
    Ok(())
}

fn define<'a>(defined: &mut HashSet<&'a str>, name: &'a str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what}: empty value name"));
    }
    if !defined.insert(name) {
        return Err(format!("{what}: value `{name}` is defined twice"));
    }
    Ok(())
}

fn check_tensor(t: &TensorProto) -> Result<(), String> {
    let width = match t.data_type {
        dtype::FLOAT | dtype::INT32 => 4,
        dtype::INT64 => 8,
        dtype::INT8 | dtype::UINT8 => 1,
        other => {
            return Err(format!(
                "initializer `{}`: unexpected data type {other}",
                t.name
            ))
        }
    };
    if t.dims.iter().any(|&d| d < 0) {
        return Err(format!(
            "initializer `{}`: negative dim in {:?}",
            t.name, t.dims
        ));
    }
    let count: i64 = t.dims.iter().product();
    if t.raw_data.len() as i64 != count * width {
        return Err(format!(
            "initializer `{}`: {} bytes of raw data for shape {:?}",
            t.name,
            t.raw_data.len(),
            t.dims
        ));
    }
    Ok(())
}
