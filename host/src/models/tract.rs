//! The tract engine (the default, pure Rust): a model parsed, typed and optimized into one plan
//! that every computation shares.

use std::collections::BTreeMap;
use std::sync::Arc;

use tract_hir::infer::Factoid;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::{ModelError, Prepared, TensorSpec};

/// A model's optimized tract plan.
pub(super) struct Plan(Arc<TypedSimplePlan>);

impl Plan {
    /// Parse, type and optimize an ONNX model (with [`fix_known_quirks`]); `shapes` fixes input
    /// shapes by input name.
    pub(super) fn prepare(
        name: &str,
        bytes: &[u8],
        shapes: &BTreeMap<String, Vec<usize>>,
    ) -> Result<Prepared<Plan>, ModelError> {
        let unsupported =
            |e: TractError| ModelError::Unsupported(format!("model `{name}`: tract cannot prepare it: {e:#}"));
        let onnx = tract_onnx::onnx();
        let mut proto = onnx
            .proto_model_for_read(&mut &*bytes)
            .map_err(|e| ModelError::Encoding(format!("model `{name}` is not an ONNX model: {e:#}")))?;
        fix_known_quirks(&mut proto);
        let mut model = onnx.model_for_proto_model(&proto).map_err(unsupported)?;
        let names: Vec<String> =
            model.input_outlets().map_err(unsupported)?.iter().map(|o| model.node(o.node).name.clone()).collect();
        super::check_shape_names(name, shapes, &names)?;
        for (i, input) in names.iter().enumerate() {
            if let Some(shape) = shapes.get(input) {
                let declared = model.input_fact(i).map_err(unsupported)?.datum_type.concretize();
                let fact = InferenceFact::dt_shape(declared.unwrap_or(DatumType::F32), shape.clone());
                model = model.with_input_fact(i, fact).map_err(unsupported)?;
            }
        }
        let typed = model.into_optimized().map_err(unsupported)?;
        let mut inputs = Vec::new();
        for (i, input) in names.into_iter().enumerate() {
            let fact = typed.input_fact(i).map_err(unsupported)?;
            let Some(shape) = fact.shape.as_concrete() else {
                return Err(super::unfixed_shape(name, &input, &format!("{:?}", fact.shape)));
            };
            inputs.push(TensorSpec { name: input, datum_type: fact.datum_type, shape: shape.to_vec() });
        }
        let outputs = typed
            .output_outlets()
            .map_err(unsupported)?
            .iter()
            .map(|o| typed.outlet_label(*o).unwrap_or(&typed.node(o.node).name).to_string())
            .collect();
        let plan = typed.into_runnable().map_err(unsupported)?;
        Ok(Prepared { engine: Plan(plan), inputs, outputs })
    }

    /// Run the plan on inputs in the graph's order; outputs in the graph's order.
    pub(super) fn run(&self, name: &str, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ModelError> {
        let inputs = inputs.into_iter().map(Tensor::into_tvalue).collect();
        let outputs = self.0.run(inputs).map_err(|e| ModelError::Runtime(format!("model `{name}`: {e:#}")))?;
        Ok(outputs.into_iter().map(TValue::into_tensor).collect())
    }
}

/// Fix, in the protobuf, what tract 0.23 gets wrong about some real models, before building them:
/// see `default_constant_of_shape_to_f32`.
pub fn fix_known_quirks(proto: &mut pb::ModelProto) {
    if let Some(graph) = proto.graph.as_mut() {
        default_constant_of_shape_to_f32(graph);
    }
}

/// ONNX says `ConstantOfShape` without a `value` attribute makes float32 zeros; tract 0.23 makes
/// float64 ones, which breaks models that rely on the default (e.g. MediaPipe BlazeFace exports).
/// Give every such node (in subgraphs too) an explicit float32 zero.
fn default_constant_of_shape_to_f32(graph: &mut pb::GraphProto) {
    for node in &mut graph.node {
        if node.op_type == "ConstantOfShape" && !node.attribute.iter().any(|a| a.name == "value") {
            node.attribute.push(pb::AttributeProto {
                name: "value".into(),
                r#type: pb::attribute_proto::AttributeType::Tensor as i32,
                t: Some(pb::TensorProto {
                    dims: vec![1],
                    data_type: pb::tensor_proto::DataType::Float as i32,
                    float_data: vec![0.0],
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        for attribute in &mut node.attribute {
            attribute.g.iter_mut().chain(attribute.graphs.iter_mut()).for_each(default_constant_of_shape_to_f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_of_shape_without_value_gets_a_float32_zero() {
        let node = |value: bool| pb::NodeProto {
            op_type: "ConstantOfShape".into(),
            attribute: if value {
                vec![pb::AttributeProto { name: "value".into(), ..Default::default() }]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        let inner = pb::GraphProto { node: vec![node(false)], ..Default::default() };
        let mut graph = pb::GraphProto {
            node: vec![
                node(false),
                node(true),
                pb::NodeProto {
                    op_type: "If".into(),
                    attribute: vec![pb::AttributeProto { g: Some(inner), ..Default::default() }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        default_constant_of_shape_to_f32(&mut graph);
        let value = |n: &pb::NodeProto| n.attribute.iter().find(|a| a.name == "value").cloned().unwrap();
        let added = value(&graph.node[0]).t.unwrap();
        assert_eq!((added.data_type, added.dims, added.float_data), (1, vec![1], vec![0.0]));
        assert!(value(&graph.node[1]).t.is_none(), "an existing value is left alone");
        let nested = graph.node[2].attribute[0].g.as_ref().unwrap();
        assert_eq!(value(&nested.node[0]).t.unwrap().data_type, 1);
    }
}
