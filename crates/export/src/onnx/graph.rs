//! A small ONNX graph builder: initializers, nodes with fresh output names, shared scalar constants.
//!
//! Nodes are appended in the order they are built, which is then a valid topological order (every input
//! exists before it is used); [`super::check::check_model`] verifies that.

use std::collections::HashMap;

use super::proto::ValueInfoProto;
use super::proto::{attr_type, dtype, AttributeProto, GraphProto, NodeProto, TensorProto};

#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Constant cache key -> initializer name, so `1.0` or a reshape target is stored once.
    constants: HashMap<String, String>,
    /// Key (op and input) -> outputs of a node built once and reused, see [`Graph::shared`].
    derived: HashMap<String, Vec<String>>,
    /// Prefix of node names (the HF module being built), as torch's exporter does: `/encoder.layer.0/...`.
    scope: String,
    counter: usize,
}

impl Graph {
    /// Names the nodes built from now on after `scope` (an HF module path).
    pub fn set_scope(&mut self, scope: &str) {
        self.scope = scope.to_string();
    }

    /// Adds an initializer from little-endian bytes; returns its name.
    pub fn initializer(
        &mut self,
        name: &str,
        data_type: i32,
        dims: &[usize],
        raw: Vec<u8>,
    ) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.to_string(),
            raw_data: raw,
        });
        name.to_string()
    }

    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dtype::FLOAT, dims, raw)
    }

    pub fn init_i8(&mut self, name: &str, dims: &[usize], data: &[i8]) -> String {
        let raw = data.iter().map(|&v| v as u8).collect();
        self.initializer(name, dtype::INT8, dims, raw)
    }

    /// A scalar f32 constant, shared by every node that uses the same value.
    pub fn scalar_f32(&mut self, v: f32) -> String {
        let key = format!("f32:{:08x}", v.to_bits());
        let name = format!("const_f32_{v:e}");
        self.constant(key, |g| g.init_f32(&name, &[], &[v]))
    }

    /// A scalar int64 constant (Gather index), shared like [`Graph::scalar_f32`].
    pub fn scalar_i64(&mut self, v: i64) -> String {
        self.const_i64(&[v], &[])
    }

    /// A 1-D int64 constant (shapes, axes, slice bounds), shared like [`Graph::scalar_f32`].
    pub fn ints_i64(&mut self, values: &[i64]) -> String {
        self.const_i64(values, &[values.len()])
    }

    fn const_i64(&mut self, values: &[i64], dims: &[usize]) -> String {
        let key = format!("i64:{dims:?}:{values:?}");
        let list: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let rank = if dims.is_empty() { "scalar" } else { "vec" };
        let name = format!("const_i64_{rank}_{}", list.join("_"));
        self.constant(key, |g| {
            let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            g.initializer(&name, dtype::INT64, dims, raw)
        })
    }

    fn constant(&mut self, key: String, make: impl FnOnce(&mut Self) -> String) -> String {
        if let Some(name) = self.constants.get(&key) {
            return name.clone();
        }
        let name = make(self);
        self.constants.insert(key, name.clone());
        name
    }

    /// The outputs of `make`, built once per `key` (op and input): Q, K and V quantize their input once.
    pub fn shared(
        &mut self,
        key: &str,
        make: impl FnOnce(&mut Self) -> Vec<String>,
    ) -> Vec<String> {
        if let Some(outputs) = self.derived.get(key) {
            return outputs.clone();
        }
        let outputs = make(self);
        self.derived.insert(key.to_string(), outputs.clone());
        outputs
    }

    /// Appends `op` with one fresh output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.node_n(op, inputs, attrs, 1).remove(0)
    }

    /// Appends `op` with `n` fresh outputs.
    pub fn node_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        n: usize,
    ) -> Vec<String> {
        self.counter += 1;
        let name = format!("/{}/{op}_{}", self.scope, self.counter);
        let outputs: Vec<String> = (0..n).map(|k| format!("{name}_output_{k}")).collect();
        self.push(op, &name, inputs, attrs, outputs.clone());
        outputs
    }

    /// Appends `op` writing to the given output name (graph outputs such as `pooler_output`).
    pub fn node_to(&mut self, op: &str, inputs: &[&str], output: &str) {
        self.counter += 1;
        let name = format!("/{}/{op}_{}", self.scope, self.counter);
        self.push(op, &name, inputs, vec![], vec![output.to_string()]);
    }

    fn push(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        output: Vec<String>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output,
            name: name.to_string(),
            op_type: op.to_string(),
            attribute,
            domain: String::new(),
        });
    }

    pub fn finish(
        self,
        name: &str,
        input: Vec<ValueInfoProto>,
        output: Vec<ValueInfoProto>,
    ) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.to_string(),
            initializer: self.initializers,
            doc_string: String::new(),
            input,
            output,
        }
    }
}

pub(crate) fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        i,
        r#type: attr_type::INT,
        ..Default::default()
    }
}

pub(crate) fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        ints: ints.to_vec(),
        r#type: attr_type::INTS,
        ..Default::default()
    }
}

pub(crate) fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        f,
        r#type: attr_type::FLOAT,
        ..Default::default()
    }
}
