//! [`Mlp::to_onnx`]: a minimal protobuf writer for the ONNX messages a small MLP needs.
//!
//! Field numbers are those of `onnx.proto` (ModelProto, GraphProto, NodeProto, TensorProto,
//! ValueInfoProto, TypeProto, AttributeProto, OperatorSetIdProto, StringStringEntryProto).

use crate::{INPUTS, Mlp};

/// ONNX `TensorProto.DataType.FLOAT` (also `TypeProto.Tensor.elem_type`).
const FLOAT: u64 = 1;
/// ONNX `AttributeProto.AttributeType.INT`.
const INT: u64 = 2;

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    /// A varint field (wire type 0).
    fn int(mut self, field: u64, value: u64) -> Self {
        self.varint(field << 3);
        self.varint(value);
        self
    }

    /// A length-delimited field (wire type 2): bytes, a string or a message.
    fn bytes(mut self, field: u64, bytes: &[u8]) -> Self {
        self.varint((field << 3) | 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
        self
    }

    fn text(self, field: u64, text: &str) -> Self {
        self.bytes(field, text.as_bytes())
    }

    fn message(self, field: u64, message: Message) -> Self {
        self.bytes(field, &message.0)
    }
}

/// `ValueInfoProto` of a float tensor with fixed dimensions.
fn float_tensor_info(name: &str, dims: &[usize]) -> Message {
    let shape = dims.iter().fold(Message::default(), |shape, &d| shape.message(1, Message::default().int(1, d as u64)));
    let tensor_type = Message::default().int(1, FLOAT).message(2, shape);
    Message::default().text(1, name).message(2, Message::default().message(1, tensor_type))
}

/// `TensorProto` of float values (raw little-endian data).
fn initializer(name: &str, dims: &[usize], values: &[f32]) -> Message {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensor = dims.iter().fold(Message::default(), |t, &d| t.int(1, d as u64));
    tensor.int(2, FLOAT).text(8, name).bytes(9, &raw)
}

/// `NodeProto`.
fn node(op: &str, inputs: &[&str], output: &str) -> Message {
    let node = inputs.iter().fold(Message::default(), |n, i| n.text(1, i));
    node.text(2, output).text(3, output).text(4, op)
}

impl Mlp {
    /// The model as ONNX (IR version 8, opset 13): input `image` float [1, 64], output
    /// `probabilities` float [1, classes]; `class_names` (by class index) are stored in the
    /// model's metadata under `classes`, joined by commas.
    pub fn to_onnx(&self, class_names: &[String]) -> Vec<u8> {
        let (h, c) = (self.hidden, self.classes);
        let softmax = node("Softmax", &["logits"], "probabilities")
            .message(5, Message::default().text(1, "axis").int(20, INT).int(3, 1));
        let graph = Message::default()
            .message(1, node("MatMul", &["image", "w1"], "hidden_mm"))
            .message(1, node("Add", &["hidden_mm", "b1"], "hidden_pre"))
            .message(1, node("Relu", &["hidden_pre"], "hidden"))
            .message(1, node("MatMul", &["hidden", "w2"], "logits_mm"))
            .message(1, node("Add", &["logits_mm", "b2"], "logits"))
            .message(1, softmax)
            .text(2, "classifier")
            .message(5, initializer("w1", &[INPUTS, h], &self.w1))
            .message(5, initializer("b1", &[h], &self.b1))
            .message(5, initializer("w2", &[h, c], &self.w2))
            .message(5, initializer("b2", &[c], &self.b2))
            .message(11, float_tensor_info("image", &[1, INPUTS]))
            .message(12, float_tensor_info("probabilities", &[1, c]));
        let classes = Message::default().text(1, "classes").text(2, &class_names.join(","));
        Message::default()
            .int(1, 8)
            .text(2, "classifier")
            .message(7, graph)
            .message(8, Message::default().text(1, "").int(2, 13))
            .message(14, classes)
            .0
    }
}

#[cfg(test)]
mod tests {
    use crate::{TrainOptions, train};

    #[test]
    fn writes_the_model_header_and_every_weight() {
        let samples = vec![([0.0; 64], 0), ([1.0; 64], 1)];
        let model = train(&samples, 2, &TrainOptions { epochs: 1, hidden: 4, ..TrainOptions::default() }, |_, _, _| {});
        let bytes = model.to_onnx(&["zero".into(), "one".into()]);
        assert_eq!(&bytes[..2], &[0x08, 8], "ir_version 8 first");
        let weights = 4 * (64 * 4 + 4 + 4 * 2 + 2);
        assert!(bytes.len() > weights && bytes.len() < weights + 1000, "{} bytes", bytes.len());
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("zero,one") && text.contains("Softmax") && text.contains("probabilities"));
    }
}
