//! A runner for TensorFlow.js *graph* models (`model.json` with `modelTopology` and a weights
//! manifest) on Burn: the graph's nodes are executed one by one with Burn tensor operations.
//!
//! Only the operations the shipped person and pose models use are implemented (see
//! `models/GRAPHS.md`); an unknown one fails at load with the node's name. Integer tensors
//! (shapes, paddings, axes) live on the CPU and every subgraph of them is folded once at load;
//! float tensors live on the device. Reshape targets whose first dimension is 1 follow the
//! input's batch, so a graph exported for batch 1 runs batched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use burn::tensor::activation::{leaky_relu, relu, sigmoid};
use burn::tensor::module::{avg_pool2d, conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{
    AvgPoolOptions, ConvOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions, PadMode,
};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::ModelError;
use crate::cpu::{Act, NhwcConv};
use crate::nn::{Padding, tf_padding};
use crate::tfjs;

/// A float tensor of rank 1 to 5.
#[derive(Debug, Clone)]
pub enum Ft {
    /// Rank 1.
    R1(Tensor<1>),
    /// Rank 2.
    R2(Tensor<2>),
    /// Rank 3.
    R3(Tensor<3>),
    /// Rank 4.
    R4(Tensor<4>),
    /// Rank 5.
    R5(Tensor<5>),
}

macro_rules! each_rank {
    ($v:expr, $t:ident => $body:expr) => {
        match $v {
            Ft::R1($t) => Ft::R1($body),
            Ft::R2($t) => Ft::R2($body),
            Ft::R3($t) => Ft::R3($body),
            Ft::R4($t) => Ft::R4($body),
            Ft::R5($t) => Ft::R5($body),
        }
    };
}

macro_rules! with_rank {
    ($v:expr, $t:ident => $body:expr) => {
        match $v {
            Ft::R1($t) => $body,
            Ft::R2($t) => $body,
            Ft::R3($t) => $body,
            Ft::R4($t) => $body,
            Ft::R5($t) => $body,
        }
    };
}

impl Ft {
    /// The dimensions.
    pub fn dims(&self) -> Vec<usize> {
        with_rank!(self, t => t.dims().to_vec())
    }

    /// Uploads `data` with `shape` (a scalar becomes rank 1).
    pub fn from_data(data: Vec<f32>, shape: &[usize], device: &Device) -> Self {
        let shape: Vec<usize> = if shape.is_empty() {
            vec![1]
        } else {
            shape.to_vec()
        };
        let flat = Tensor::<1>::from_data(
            TensorData::new(data, [shape.iter().product::<usize>()]),
            device,
        );
        Ft::R1(flat).reshape(&shape)
    }

    /// The values, row-major.
    pub fn to_vec(&self) -> Vec<f32> {
        with_rank!(self, t => t.to_data().try_into_vec::<f32>().expect("f32 tensor"))
    }

    fn flat(self) -> Tensor<1> {
        let n: usize = self.dims().iter().product();
        with_rank!(self, t => t.reshape([n]))
    }

    /// The same values with another shape (of rank 1–5).
    pub fn reshape(self, shape: &[usize]) -> Self {
        let flat = self.flat();
        match shape.len() {
            1 => Ft::R1(flat.reshape([shape[0]])),
            2 => Ft::R2(flat.reshape([shape[0], shape[1]])),
            3 => Ft::R3(flat.reshape([shape[0], shape[1], shape[2]])),
            4 => Ft::R4(flat.reshape([shape[0], shape[1], shape[2], shape[3]])),
            5 => Ft::R5(flat.reshape([shape[0], shape[1], shape[2], shape[3], shape[4]])),
            n => panic!("rank {n} tensors are not supported"),
        }
    }

    /// Reorders the axes.
    pub fn permute(self, perm: &[usize]) -> Self {
        each_rank!(self, t => t.permute(perm.try_into().expect("one axis per dimension")))
    }

    /// As rank 4 (panics otherwise; callers check).
    fn r4(self) -> Tensor<4> {
        match self {
            Ft::R4(t) => t,
            other => panic!("expected a rank-4 tensor, got {:?}", other.dims()),
        }
    }

    /// Raises the rank to `rank` by adding leading axes of size 1.
    fn lift(self, rank: usize) -> Self {
        let mut dims = self.dims();
        while dims.len() < rank {
            dims.insert(0, 1);
        }
        self.reshape(&dims)
    }
}

/// A value flowing through the graph.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // boxing every device tensor would cost more than it saves
enum Value {
    /// A float tensor on the device.
    F(Ft),
    /// An integer tensor on the CPU (shapes, axes, paddings).
    I(Vec<i64>, Vec<usize>),
}

#[derive(Debug, Deserialize)]
struct ModelJson {
    #[serde(rename = "modelTopology")]
    topology: Topology,
}

#[derive(Debug, Deserialize)]
struct Topology {
    node: Vec<NodeJson>,
}

#[derive(Debug, Clone, Deserialize)]
struct NodeJson {
    name: String,
    op: String,
    #[serde(default)]
    input: Vec<String>,
    #[serde(default)]
    attr: HashMap<String, Json>,
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    op: String,
    /// (producer, output index); control inputs (`^name`) are dropped.
    inputs: Vec<(String, usize)>,
    attr: HashMap<String, Json>,
}

impl Node {
    fn attr_str(&self, key: &str) -> Option<String> {
        let s = self.attr.get(key)?.get("s")?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        String::from_utf8(bytes).ok()
    }

    fn attr_strs(&self, key: &str) -> Vec<String> {
        self.attr
            .get(key)
            .and_then(|a| a.get("list")?.get("s")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.as_str()?)
                    .ok()?;
                String::from_utf8(bytes).ok()
            })
            .collect()
    }

    fn attr_ints(&self, key: &str) -> Vec<i64> {
        self.attr
            .get(key)
            .and_then(|a| a.get("list")?.get("i")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64()))
            .collect()
    }

    fn attr_int(&self, key: &str) -> Option<i64> {
        let v = self.attr.get(key)?.get("i")?;
        v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64())
    }

    fn attr_f(&self, key: &str) -> Option<f64> {
        self.attr.get(key)?.get("f")?.as_f64()
    }

    fn attr_b(&self, key: &str) -> bool {
        self.attr
            .get(key)
            .and_then(|a| a.get("b")?.as_bool())
            .unwrap_or(false)
    }

    fn nhwc(&self) -> bool {
        self.attr_str("data_format").is_none_or(|f| f == "NHWC")
    }
}

/// A loaded graph model.
#[derive(Debug)]
pub struct GraphModel {
    source: PathBuf,
    nodes: HashMap<String, Node>,
    /// Values known at load: weights and every folded integer subgraph.
    constants: HashMap<(String, usize), Value>,
    /// Convolution kernels in OIHW, by node name.
    kernels: HashMap<String, Tensor<4>>,
    /// On the CPU backend, the NHWC convolutions (`crate::cpu`) with their fused bias and
    /// activation, by node name; a node not here runs through Burn.
    cpu_convs: HashMap<String, (NhwcConv, Act)>,
    /// The nodes `run` evaluates, each after its inputs: those the declared outputs need, less
    /// the placeholder and everything known at load. Worked out once, not per frame.
    plan: Vec<String>,
    /// How many times each computed value is consumed (by the plan and the declared outputs),
    /// so `run` can drop an intermediate after its last use.
    uses: HashMap<(String, usize), usize>,
    /// The outputs named at load.
    declared: Vec<(String, usize)>,
    /// The input placeholder.
    input: String,
    device: Device,
    /// Multiply-accumulates of the convolutions run so far (for benchmarks).
    macs: std::sync::atomic::AtomicU64,
}

fn split_input(input: &str) -> Option<(String, usize)> {
    if input.starts_with('^') {
        return None;
    }
    match input.rsplit_once(':') {
        Some((name, i)) if i.chars().all(|c| c.is_ascii_digit()) => {
            Some((name.to_string(), i.parse().unwrap_or(0)))
        }
        _ => Some((input.to_string(), 0)),
    }
}

const FLOAT_OPS: &[&str] = &[
    "Placeholder",
    "Identity",
    "Cast",
    "Pad",
    "PadV2",
    "Transpose",
    "Reshape",
    "Squeeze",
    "ExpandDims",
    "Conv2D",
    "_FusedConv2D",
    "DepthwiseConv2dNative",
    "FusedDepthwiseConv2dNative",
    "Add",
    "AddV2",
    "BiasAdd",
    "Sub",
    "Mul",
    "RealDiv",
    "SquaredDifference",
    "Maximum",
    "Minimum",
    "LeakyRelu",
    "Relu",
    "Relu6",
    "Sigmoid",
    "Sqrt",
    "Tanh",
    "MaxPool",
    "AvgPool",
    "ConcatV2",
    "ResizeBilinear",
    "SplitV",
    "Split",
    "Unpack",
];

impl GraphModel {
    /// Loads `assets/relative` (a `model.json`) and its weights, verified against the committed
    /// checksums, and prepares it to compute `outputs` (node names, `name:i` for output `i`).
    pub fn load(
        assets: &Path,
        relative: &str,
        outputs: &[&str],
        device: &Device,
    ) -> Result<Self, ModelError> {
        let source = assets.join(relative);
        let text = tfjs::read_verified(assets, relative)?;
        let model: ModelJson = serde_json::from_slice(&text).map_err(|e| ModelError::Format {
            file: source.clone(),
            reason: e.to_string(),
        })?;
        let mut weights = tfjs::load(assets, relative)?;
        let mut nodes = HashMap::new();
        let mut input = None;
        for n in model.topology.node {
            if n.op == "Placeholder" {
                input = Some(n.name.clone());
            }
            nodes.insert(
                n.name.clone(),
                Node {
                    inputs: n.input.iter().filter_map(|i| split_input(i)).collect(),
                    name: n.name,
                    op: n.op,
                    attr: n.attr,
                },
            );
        }
        let input = input.ok_or_else(|| ModelError::Format {
            file: source.clone(),
            reason: "the graph has no Placeholder input".into(),
        })?;
        let mut graph = Self {
            source,
            nodes,
            constants: HashMap::new(),
            kernels: HashMap::new(),
            cpu_convs: HashMap::new(),
            plan: Vec::new(),
            uses: HashMap::new(),
            declared: outputs.iter().filter_map(|o| split_input(o)).collect(),
            input,
            device: device.clone(),
            macs: std::sync::atomic::AtomicU64::new(0),
        };
        // Every node the outputs need, producers first.
        let order = graph.order(outputs)?;
        for name in &order {
            let node = graph.nodes[name].clone();
            if node.op == "Const" {
                let t = weights
                    .take_any(&node.name)
                    .ok_or_else(|| ModelError::MissingWeight {
                        file: graph.source.clone(),
                        name: node.name.clone(),
                    })?;
                let dtype = node
                    .attr
                    .get("dtype")
                    .and_then(|d| d.get("type"))
                    .and_then(Json::as_str)
                    .unwrap_or("DT_FLOAT");
                let value = if dtype == "DT_FLOAT" {
                    Value::F(Ft::from_data(t.data, &t.shape, device))
                } else {
                    Value::I(t.data.iter().map(|&v| v as i64).collect(), t.shape)
                };
                graph.constants.insert((node.name.clone(), 0), value);
                continue;
            }
            if node.op == "Placeholder" {
                continue;
            }
            let all_int = !node.inputs.is_empty()
                && node
                    .inputs
                    .iter()
                    .all(|i| matches!(graph.constants.get(i), Some(Value::I(..))));
            if all_int {
                let outs = graph.fold(&node)?;
                for (i, v) in outs.into_iter().enumerate() {
                    graph.constants.insert((node.name.clone(), i), v);
                }
                continue;
            }
            if !FLOAT_OPS.contains(&node.op.as_str()) {
                return Err(graph.unsupported(&node, "operation not supported"));
            }
            if matches!(
                node.op.as_str(),
                "Conv2D" | "_FusedConv2D" | "DepthwiseConv2dNative" | "FusedDepthwiseConv2dNative"
            ) {
                let kernel = match graph.constants.get(&node.inputs[1]) {
                    Some(Value::F(f)) => f.clone(),
                    _ => return Err(graph.unsupported(&node, "filter is not a constant")),
                };
                if *device == Device::flex()
                    && let Some(native) = graph.cpu_conv(&node, &kernel)
                {
                    graph.cpu_convs.insert(node.name.clone(), native);
                    continue;
                }
                let dims = kernel.dims();
                let depthwise = node.op.contains("Depthwise");
                // HWIO → OIHW; depthwise [kh, kw, C, m] → [C*m, 1, kh, kw].
                let oihw = if depthwise {
                    let (kh, kw, c, m) = (dims[0], dims[1], dims[2], dims[3]);
                    kernel
                        .reshape(&[kh, kw, c * m])
                        .permute(&[2, 0, 1])
                        .reshape(&[c * m, 1, kh, kw])
                } else {
                    kernel.permute(&[3, 2, 0, 1])
                };
                graph.kernels.insert(node.name.clone(), oihw.r4());
            }
        }
        graph.plan = order
            .into_iter()
            .filter(|name| {
                graph.nodes[name].op != "Placeholder"
                    && !graph.constants.contains_key(&(name.clone(), 0))
            })
            .collect();
        for name in &graph.plan {
            for input in &graph.nodes[name].inputs {
                *graph.uses.entry(input.clone()).or_default() += 1;
            }
        }
        for key in &graph.declared {
            *graph.uses.entry(key.clone()).or_default() += 1;
        }
        Ok(graph)
    }

    /// How many of the graph's convolutions run on the NHWC CPU path and how many through
    /// Burn (all of them through Burn on a wgpu device).
    pub fn convolution_paths(&self) -> (usize, usize) {
        (self.cpu_convs.len(), self.kernels.len())
    }

    /// Multiply-accumulates of the convolutions run since the last call (then reset).
    pub fn take_macs(&self) -> u64 {
        self.macs.swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// A constant of the graph (one of the `outputs` given to [`GraphModel::load`]).
    pub fn run_constant(&self, name: &str) -> Result<Ft, ModelError> {
        match self.constants.get(&(name.to_string(), 0)) {
            Some(Value::F(f)) => Ok(f.clone()),
            _ => Err(ModelError::Format {
                file: self.source.clone(),
                reason: format!("no float constant `{name}` was loaded"),
            }),
        }
    }

    fn unsupported(&self, node: &Node, what: &str) -> ModelError {
        ModelError::Format {
            file: self.source.clone(),
            reason: format!("node `{}` ({}): {what}", node.name, node.op),
        }
    }

    /// Nodes needed for `outputs`, each after its inputs.
    fn order(&self, outputs: &[&str]) -> Result<Vec<String>, ModelError> {
        let mut order = Vec::new();
        let mut state: HashMap<String, u8> = HashMap::new();
        let mut stack: Vec<(String, bool)> = outputs
            .iter()
            .filter_map(|o| split_input(o))
            .map(|(n, _)| (n, false))
            .collect();
        while let Some((name, done)) = stack.pop() {
            if done {
                state.insert(name.clone(), 2);
                order.push(name);
                continue;
            }
            match state.get(&name) {
                Some(2) => continue,
                Some(1) => {
                    return Err(ModelError::Format {
                        file: self.source.clone(),
                        reason: format!("the graph has a cycle through `{name}`"),
                    });
                }
                _ => {}
            }
            let node = self.nodes.get(&name).ok_or_else(|| ModelError::Format {
                file: self.source.clone(),
                reason: format!("no node named `{name}`"),
            })?;
            state.insert(name.clone(), 1);
            stack.push((name.clone(), true));
            for (input, _) in &node.inputs {
                if state.get(input) != Some(&2) {
                    stack.push((input.clone(), false));
                }
            }
        }
        Ok(order)
    }

    fn ints(&self, node: &Node, i: usize) -> Result<Vec<i64>, ModelError> {
        match self.constants.get(&node.inputs[i]) {
            Some(Value::I(v, _)) => Ok(v.clone()),
            _ => Err(self.unsupported(node, &format!("input {i} must be a constant integer"))),
        }
    }

    /// Evaluates an integer-only node at load.
    fn fold(&self, node: &Node) -> Result<Vec<Value>, ModelError> {
        let arg = |i: usize| match &self.constants[&node.inputs[i]] {
            Value::I(v, s) => (v.clone(), s.clone()),
            Value::F(_) => unreachable!("checked integer inputs"),
        };
        let binary = |f: fn(i64, i64) -> i64| {
            let (a, sa) = arg(0);
            let (b, sb) = arg(1);
            let (long, shape) = if a.len() >= b.len() {
                (a.len(), sa)
            } else {
                (b.len(), sb)
            };
            let v = (0..long)
                .map(|k| f(a[k % a.len().max(1)], b[k % b.len().max(1)]))
                .collect();
            Ok(vec![Value::I(v, shape)])
        };
        match node.op.as_str() {
            "Identity" | "Cast" => Ok(vec![Value::I(arg(0).0, arg(0).1)]),
            "Add" | "AddV2" => binary(|a, b| a + b),
            "Sub" => binary(|a, b| a - b),
            "Mul" => binary(|a, b| a * b),
            "FloorDiv" => binary(|a, b| a.div_euclid(b)),
            "SparseToDense" => {
                let (indices, _) = arg(0);
                let (shape, _) = arg(1);
                let (values, _) = arg(2);
                let (default, _) = arg(3);
                let len = shape.iter().product::<i64>().max(0) as usize;
                let mut out = vec![default.first().copied().unwrap_or(0); len];
                for (k, &i) in indices.iter().enumerate() {
                    let v = values[k % values.len().max(1)];
                    if let Some(slot) = out.get_mut(i as usize) {
                        *slot = v;
                    }
                }
                Ok(vec![Value::I(
                    out,
                    shape.iter().map(|&d| d as usize).collect(),
                )])
            }
            _ => Err(self.unsupported(node, "operation not supported on constants")),
        }
    }

    /// Runs the graph on `input` and returns `outputs` (as given to [`GraphModel::load`] or a
    /// subset), each as a float tensor.
    pub fn run(&self, input: Ft, outputs: &[&str]) -> Result<Vec<Ft>, ModelError> {
        for o in outputs {
            let key = split_input(o).expect("output name");
            if !self.declared.contains(&key) {
                return Err(ModelError::Format {
                    file: self.source.clone(),
                    reason: format!("output `{o}` was not named when the graph was loaded"),
                });
            }
        }
        let batch = input.dims()[0];
        if self.cpu_convs.is_empty() || batch == 1 {
            return self.run_batch(input, outputs);
        }
        // On the CPU one image at a time: a layer's activations for one image stay in cache,
        // a batch's do not (batch 8 ran 30 % slower per image than batch 1).
        let images = split(input, &vec![1; batch], 0);
        let mut per_output: Vec<Vec<Ft>> = vec![Vec::with_capacity(batch); outputs.len()];
        for image in images {
            for (all, y) in per_output.iter_mut().zip(self.run_batch(image, outputs)?) {
                if y.dims().first() != Some(&1) {
                    return Err(ModelError::Format {
                        file: self.source.clone(),
                        reason: "an output does not follow the input's batch".into(),
                    });
                }
                all.push(y);
            }
        }
        Ok(per_output
            .into_iter()
            .map(|parts| concat(parts, 0))
            .collect())
    }

    /// [`GraphModel::run`] on the whole batch at once.
    fn run_batch(&self, input: Ft, outputs: &[&str]) -> Result<Vec<Ft>, ModelError> {
        let mut values: HashMap<(String, usize), Value> = HashMap::new();
        values.insert((self.input.clone(), 0), Value::F(input));
        let mut uses = self.uses.clone();
        for name in &self.plan {
            let node = &self.nodes[name];
            let mut args = Vec::with_capacity(node.inputs.len());
            for key in &node.inputs {
                let value = match self.constants.get(key) {
                    Some(v) => v.clone(),
                    None => {
                        let left = uses.get_mut(key).expect("counted");
                        *left -= 1;
                        if *left == 0 {
                            values.remove(key)
                        } else {
                            values.get(key).cloned()
                        }
                        .ok_or_else(|| self.unsupported(node, "an input was not computed"))?
                    }
                };
                args.push(value);
            }
            let outs = self.eval(node, args)?;
            for (i, v) in outs.into_iter().enumerate() {
                values.insert((name.clone(), i), Value::F(v));
            }
        }
        outputs
            .iter()
            .map(|o| {
                let key = split_input(o).expect("output name");
                match values
                    .remove(&key)
                    .or_else(|| self.constants.get(&key).cloned())
                {
                    Some(Value::F(f)) => Ok(f),
                    _ => Err(ModelError::Format {
                        file: self.source.clone(),
                        reason: format!("output `{o}` was not computed"),
                    }),
                }
            })
            .collect()
    }

    fn eval(&self, node: &Node, args: Vec<Value>) -> Result<Vec<Ft>, ModelError> {
        let float = |v: &Value| -> Result<Ft, ModelError> {
            match v {
                Value::F(f) => Ok(f.clone()),
                Value::I(data, shape) => Ok(Ft::from_data(
                    data.iter().map(|&x| x as f32).collect(),
                    shape,
                    &self.device,
                )),
            }
        };
        let ints = |i: usize| self.ints(node, i);
        let x = float(&args[0])?;
        let one = |f: Ft| Ok(vec![f]);
        match node.op.as_str() {
            "Identity" | "Cast" => one(x),
            "Pad" | "PadV2" => {
                let pads = ints(1)?;
                let value = if node.op == "PadV2" {
                    float(&args[2])?.to_vec()[0]
                } else {
                    0.0
                };
                let pairs: Vec<(usize, usize)> = pads
                    .chunks_exact(2)
                    .map(|p| (p[0] as usize, p[1] as usize))
                    .collect();
                one(each_rank!(x, t => t.pad(pairs.as_slice(), PadMode::Constant(value))))
            }
            "Transpose" => {
                let perm: Vec<usize> = ints(1)?.iter().map(|&p| p as usize).collect();
                one(x.permute(&perm))
            }
            "Reshape" => {
                let dims = x.dims();
                let mut target = ints(1)?;
                if target.first() == Some(&1) && dims[0] > 1 {
                    target[0] = dims[0] as i64;
                }
                one(x.reshape(&resolve_shape(&target, dims.iter().product())))
            }
            "Squeeze" => {
                let axes = node.attr_ints("squeeze_dims");
                let dims = x.dims();
                let rank = dims.len() as i64;
                let keep: Vec<usize> = dims
                    .iter()
                    .enumerate()
                    .filter(|&(i, &d)| {
                        !(d == 1
                            && (axes.is_empty()
                                || axes.iter().any(|&a| (a + rank) % rank == i as i64)))
                    })
                    .map(|(_, &d)| d)
                    .collect();
                one(x.reshape(&keep))
            }
            "ExpandDims" => {
                let mut dims = x.dims();
                let axis = ints(1)?[0];
                let at = if axis < 0 {
                    dims.len() as i64 + 1 + axis
                } else {
                    axis
                } as usize;
                dims.insert(at, 1);
                one(x.reshape(&dims))
            }
            "Conv2D" | "_FusedConv2D" | "DepthwiseConv2dNative" | "FusedDepthwiseConv2dNative"
                if self.cpu_convs.contains_key(&node.name) =>
            {
                // The only reference to the input, so Burn hands its buffer over uncopied.
                drop(args);
                one(self.conv_nhwc(node, x)?)
            }
            "Conv2D" | "_FusedConv2D" | "DepthwiseConv2dNative" | "FusedDepthwiseConv2dNative" => {
                let mut y = self.conv(node, x)?;
                if node.op.starts_with("_Fused") || node.op.starts_with("Fused") {
                    let fused = node.attr_strs("fused_ops");
                    let mut extra = args[2..].iter();
                    for op in &fused {
                        y = match op.as_str() {
                            "BiasAdd" => {
                                let b = float(extra.next().ok_or_else(|| {
                                    self.unsupported(node, "BiasAdd without a bias")
                                })?)?;
                                binary(y, b, |a, b| a + b)
                            }
                            "Relu" => each_rank!(y, t => relu(t)),
                            "Relu6" => each_rank!(y, t => t.clamp(0.0, 6.0)),
                            "LeakyRelu" => {
                                let alpha = node.attr_f("leakyrelu_alpha").unwrap_or(0.2);
                                each_rank!(y, t => leaky_relu(t, alpha))
                            }
                            other => {
                                return Err(self.unsupported(node, &format!("fused op {other}")));
                            }
                        };
                    }
                }
                one(y)
            }
            "Add" | "AddV2" | "BiasAdd" => one(binary(x, float(&args[1])?, |a, b| a + b)),
            "Sub" => one(binary(x, float(&args[1])?, |a, b| a - b)),
            "Mul" => one(binary(x, float(&args[1])?, |a, b| a * b)),
            "RealDiv" => one(binary(x, float(&args[1])?, |a, b| a / b)),
            "SquaredDifference" => one(binary(x, float(&args[1])?, |a, b| {
                let d = a - b;
                d.clone() * d
            })),
            "Maximum" => one(binary(x, float(&args[1])?, |a, b| a.max_pair(b))),
            "Minimum" => one(binary(x, float(&args[1])?, |a, b| a.min_pair(b))),
            "LeakyRelu" => {
                let alpha = node.attr_f("alpha").unwrap_or(0.2);
                one(each_rank!(x, t => leaky_relu(t, alpha)))
            }
            "Relu" => one(each_rank!(x, t => relu(t))),
            "Relu6" => one(each_rank!(x, t => t.clamp(0.0, 6.0))),
            "Sigmoid" => one(each_rank!(x, t => sigmoid(t))),
            "Sqrt" => one(each_rank!(x, t => t.sqrt())),
            "Tanh" => one(each_rank!(x, t => t.tanh())),
            "MaxPool" | "AvgPool" => one(self.pool(node, x)?),
            "ConcatV2" => {
                let n = args.len() - 1;
                let rank = x.dims().len() as i64;
                let axis = ints(n)?[0];
                let axis = ((axis + rank) % rank) as usize;
                let parts = args[..n].iter().map(float).collect::<Result<Vec<_>, _>>()?;
                one(concat(parts, axis))
            }
            "ResizeBilinear" => {
                if node.attr_b("align_corners") || !node.attr_b("half_pixel_centers") {
                    return Err(self.unsupported(
                        node,
                        "only half_pixel_centers=true, align_corners=false is implemented",
                    ));
                }
                let size = ints(1)?;
                let nchw = x.r4().permute([0, 3, 1, 2]);
                let mut options = InterpolateOptions::new(InterpolateMode::Bilinear);
                options.align_corners = false;
                options.output_size = Some([size[0] as usize, size[1] as usize]);
                let y = interpolate(nchw, options).permute([0, 2, 3, 1]);
                one(Ft::R4(y))
            }
            "SplitV" | "Split" => {
                let (sizes, axis) = if node.op == "SplitV" {
                    (ints(1)?, ints(2)?[0])
                } else {
                    let n = node.attr_int("num_split").unwrap_or(1);
                    let axis = match &args[0] {
                        Value::I(v, _) => v[0],
                        Value::F(_) => 0,
                    };
                    let x = float(&args[1])?;
                    let rank = x.dims().len() as i64;
                    let a = ((axis + rank) % rank) as usize;
                    let size = x.dims()[a] as i64 / n;
                    return Ok(split(x, &vec![size; n as usize], a));
                };
                let rank = x.dims().len() as i64;
                let axis = ((axis + rank) % rank) as usize;
                let total = x.dims()[axis] as i64;
                let known: i64 = sizes.iter().filter(|&&s| s >= 0).sum();
                let sizes: Vec<i64> = sizes
                    .iter()
                    .map(|&s| if s < 0 { total - known } else { s })
                    .collect();
                Ok(split(x, &sizes, axis))
            }
            "Unpack" => {
                let dims = x.dims();
                let rank = dims.len() as i64;
                let axis = node.attr_int("axis").unwrap_or(0);
                let axis = ((axis + rank) % rank) as usize;
                let mut rest = dims.clone();
                rest.remove(axis);
                Ok(split(x, &vec![1; dims[axis]], axis)
                    .into_iter()
                    .map(|part| part.reshape(&rest))
                    .collect())
            }
            "Placeholder" => one(x),
            _ => Err(self.unsupported(node, "operation not supported")),
        }
    }

    fn conv(&self, node: &Node, x: Ft) -> Result<Ft, ModelError> {
        let kernel = self.kernels[&node.name].clone();
        let [out_c, _, kh, kw] = kernel.dims();
        let nhwc = node.nhwc();
        let x = if nhwc {
            x.r4().permute([0, 3, 1, 2])
        } else {
            x.r4()
        };
        let [_, in_c, h, w] = x.dims();
        let strides = node.attr_ints("strides");
        let (sh, sw) = if nhwc {
            (strides[1] as usize, strides[2] as usize)
        } else {
            (strides[2] as usize, strides[3] as usize)
        };
        let dilations = node.attr_ints("dilations");
        if dilations.iter().any(|&d| d != 1) {
            return Err(self.unsupported(node, "dilated convolutions are not implemented"));
        }
        let padding = self.padding(node, [h, w], [kh, kw], [sh, sw])?;
        let groups = if node.op.contains("Depthwise") {
            in_c
        } else {
            1
        };
        let batch = x.dims()[0];
        let oh = (h + padding[0].0 + padding[0].1 - kh) / sh + 1;
        let ow = (w + padding[1].0 + padding[1].1 - kw) / sw + 1;
        let macs = batch * oh * ow * out_c * (in_c / groups) * kh * kw;
        self.macs
            .fetch_add(macs as u64, std::sync::atomic::Ordering::Relaxed);
        let options = ConvOptions::new_with_padding([sh, sw], padding, [1, 1], groups);
        let y = conv2d(x, kernel, None, options);
        Ok(Ft::R4(if nhwc { y.permute([0, 2, 3, 1]) } else { y }))
    }

    /// The (before, after) padding of a convolution node along height and width.
    fn padding(
        &self,
        node: &Node,
        [h, w]: [usize; 2],
        [kh, kw]: [usize; 2],
        [sh, sw]: [usize; 2],
    ) -> Result<[(usize, usize); 2], ModelError> {
        Ok(match node.attr_str("padding").as_deref() {
            Some("SAME") => [
                tf_padding(h, kh, sh, Padding::Same),
                tf_padding(w, kw, sw, Padding::Same),
            ],
            Some("VALID") | None => [(0, 0), (0, 0)],
            Some("EXPLICIT") => {
                let p = node.attr_ints("explicit_paddings");
                let (ph, pw) = if node.nhwc() { (2, 4) } else { (4, 6) };
                [
                    (p[ph] as usize, p[ph + 1] as usize),
                    (p[pw] as usize, p[pw + 1] as usize),
                ]
            }
            Some(other) => return Err(self.unsupported(node, &format!("padding {other}"))),
        })
    }

    /// The CPU convolution for a convolution node, when the node is one it covers: NHWC,
    /// undilated, a depthwise multiplier of 1, and fused operations (if any) that are a
    /// constant bias followed by at most one activation. `kernel` is the node's HWIO filter.
    fn cpu_conv(&self, node: &Node, kernel: &Ft) -> Option<(NhwcConv, Act)> {
        if !node.nhwc() || node.attr_ints("dilations").iter().any(|&d| d != 1) {
            return None;
        }
        let strides = node.attr_ints("strides");
        let stride = [*strides.get(1)? as usize, *strides.get(2)? as usize];
        let dims = kernel.dims();
        let (kh, kw, cin, cout) = (dims[0], dims[1], dims[2], dims[3]);
        let mut bias = vec![
            0.0;
            if node.op.contains("Depthwise") {
                cin
            } else {
                cout
            }
        ];
        let mut act = Act::Linear;
        if node.op.starts_with("_Fused") || node.op.starts_with("Fused") {
            let fused = node.attr_strs("fused_ops");
            let (first, rest) = fused.split_first()?;
            if first != "BiasAdd" || rest.len() > 1 {
                return None;
            }
            match self.constants.get(node.inputs.get(2)?) {
                Some(Value::F(b)) if b.dims() == [bias.len()] => bias = b.to_vec(),
                _ => return None,
            }
            act = match rest.first().map(String::as_str) {
                None => Act::Linear,
                Some("Relu") => Act::Relu,
                Some("Relu6") => Act::Relu6,
                Some("LeakyRelu") => {
                    Act::Leaky(node.attr_f("leakyrelu_alpha").unwrap_or(0.2) as f32)
                }
                Some(_) => return None,
            };
        }
        let data = kernel.to_vec();
        let conv = if node.op.contains("Depthwise") {
            if cout != 1 {
                return None;
            }
            NhwcConv::depthwise(&data, [kh, kw, cin], None, bias, 1)
        } else {
            NhwcConv::dense(&data, [kh, kw, cin, cout], None, bias, 1)
        };
        Some((conv.with_strides(stride), act))
    }

    /// A convolution node on the CPU: NHWC in, NHWC out, bias and activation included.
    fn conv_nhwc(&self, node: &Node, x: Ft) -> Result<Ft, ModelError> {
        let (conv, act) = &self.cpu_convs[&node.name];
        let x = x.r4();
        let [n, h, w, c] = x.dims();
        let padding = self.padding(node, [h, w], conv.kernel, conv.stride)?;
        self.macs.fetch_add(
            n as u64 * conv.macs(h, w, padding),
            std::sync::atomic::Ordering::Relaxed,
        );
        let data = x.into_data();
        let values = data
            .as_slice::<f32>()
            .map_err(|e| self.unsupported(node, &format!("input is not f32: {e:?}")))?;
        let y = conv.forward(values, [n, h, w, c], padding, *act);
        Ok(Ft::R4(Tensor::from_data(
            TensorData::new(y.data, y.dims),
            &self.device,
        )))
    }

    fn pool(&self, node: &Node, x: Ft) -> Result<Ft, ModelError> {
        let nhwc = node.nhwc();
        let x = if nhwc {
            x.r4().permute([0, 3, 1, 2])
        } else {
            x.r4()
        };
        let k = node.attr_ints("ksize");
        let s = node.attr_ints("strides");
        let (k, s) = if nhwc {
            (
                [k[1] as usize, k[2] as usize],
                [s[1] as usize, s[2] as usize],
            )
        } else {
            (
                [k[2] as usize, k[3] as usize],
                [s[2] as usize, s[3] as usize],
            )
        };
        if node.attr_str("padding").as_deref() != Some("VALID") {
            return Err(self.unsupported(node, "only VALID pooling is implemented"));
        }
        let y = if node.op == "MaxPool" {
            max_pool2d(x, MaxPoolOptions::new(k).with_stride(s))
        } else {
            avg_pool2d(x, AvgPoolOptions::new(k).with_stride(s))
        };
        Ok(Ft::R4(if nhwc { y.permute([0, 2, 3, 1]) } else { y }))
    }
}

/// A reshape target with `-1` resolved.
fn resolve_shape(target: &[i64], count: usize) -> Vec<usize> {
    let known: i64 = target.iter().filter(|&&d| d >= 0).product();
    target
        .iter()
        .map(|&d| {
            if d < 0 {
                count / known.max(1) as usize
            } else {
                d as usize
            }
        })
        .collect()
}

/// An element-wise operation with NumPy broadcasting.
fn binary(a: Ft, b: Ft, op: fn(Tensor<5>, Tensor<5>) -> Tensor<5>) -> Ft {
    let rank = a.dims().len().max(b.dims().len());
    let out_rank = rank;
    let (a5, b5) = (a.lift(5), b.lift(5));
    let (Ft::R5(a5), Ft::R5(b5)) = (a5, b5) else {
        unreachable!("lifted to rank 5")
    };
    let y = Ft::R5(op(a5, b5));
    let dims = y.dims();
    y.reshape(&dims[5 - out_rank..])
}

fn concat(parts: Vec<Ft>, axis: usize) -> Ft {
    match &parts[0] {
        Ft::R1(_) => Ft::R1(Tensor::cat(
            parts
                .into_iter()
                .map(|p| match p {
                    Ft::R1(t) => t,
                    _ => unreachable!(),
                })
                .collect(),
            axis,
        )),
        Ft::R2(_) => Ft::R2(Tensor::cat(
            parts
                .into_iter()
                .map(|p| match p {
                    Ft::R2(t) => t,
                    _ => unreachable!(),
                })
                .collect(),
            axis,
        )),
        Ft::R3(_) => Ft::R3(Tensor::cat(
            parts
                .into_iter()
                .map(|p| match p {
                    Ft::R3(t) => t,
                    _ => unreachable!(),
                })
                .collect(),
            axis,
        )),
        Ft::R4(_) => Ft::R4(Tensor::cat(
            parts
                .into_iter()
                .map(|p| match p {
                    Ft::R4(t) => t,
                    _ => unreachable!(),
                })
                .collect(),
            axis,
        )),
        Ft::R5(_) => Ft::R5(Tensor::cat(
            parts
                .into_iter()
                .map(|p| match p {
                    Ft::R5(t) => t,
                    _ => unreachable!(),
                })
                .collect(),
            axis,
        )),
    }
}

fn split(x: Ft, sizes: &[i64], axis: usize) -> Vec<Ft> {
    let sizes: Vec<usize> = sizes.iter().map(|&s| s as usize).collect();
    match x {
        Ft::R1(t) => t
            .split_with_sizes(sizes, axis)
            .into_iter()
            .map(Ft::R1)
            .collect(),
        Ft::R2(t) => t
            .split_with_sizes(sizes, axis)
            .into_iter()
            .map(Ft::R2)
            .collect(),
        Ft::R3(t) => t
            .split_with_sizes(sizes, axis)
            .into_iter()
            .map(Ft::R3)
            .collect(),
        Ft::R4(t) => t
            .split_with_sizes(sizes, axis)
            .into_iter()
            .map(Ft::R4)
            .collect(),
        Ft::R5(t) => t
            .split_with_sizes(sizes, axis)
            .into_iter()
            .map(Ft::R5)
            .collect(),
    }
}
