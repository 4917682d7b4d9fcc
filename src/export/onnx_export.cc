// ExportOnnx (onnx_export.h): a model file's layers as ONNX operators, through the protobuf
// classes of Debian's libonnx-dev, checked by its checker and shape inference.
#include "onnx_export.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>

#include "mpiflow/window.h"

namespace mpiflow {
namespace {

constexpr int64_t kIrVersion = 8;  // ONNX 1.10 to 1.12's IR: what opsets 13 to 17 need
constexpr int64_t kProtobufLimit = int64_t{2000} << 20;  // one message stays under 2 GiB

// A value of the ONNX graph as the layers see it: mpiflow's layout is NHWC; `nchw` says the
// value is the transposed (N, C, H, W) form that ONNX's Conv and pools take.
struct Value {
  std::string name;
  Shape shape;  // mpiflow's (NHWC) shape, batch -1
  bool nchw = false;
};

class Writer {
 public:
  Writer(TrainedModel& t, onnx::GraphProto* g) : t_(t), g_(g) {}

  // A node of `op` reading `inputs` and giving one output named after the layer.
  onnx::NodeProto* Node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::string& layer) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    const std::string out = Fresh(layer + "/" + op);
    n->set_name(out);
    for (const std::string& in : inputs) n->add_input(in);
    n->add_output(out);
    return n;
  }
  static void Ints(onnx::NodeProto* n, const char* name, const std::vector<int64_t>& v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void Int(onnx::NodeProto* n, const char* name, int64_t v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void Float(onnx::NodeProto* n, const char* name, double v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }

  // An initializer of float32 `values` (dims), or int64 for shapes.
  std::string Floats(const std::string& name, const std::vector<int64_t>& dims,
                     const float* values) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(Fresh(name));
    t->set_data_type(onnx::TensorProto::FLOAT);
    int64_t n = 1;
    for (int64_t d : dims) t->add_dims(d), n *= d;
    t->set_raw_data(values, static_cast<size_t>(n) * sizeof(float));
    parameters_ += n;
    return t->name();
  }
  std::string Int64s(const std::string& name, const std::vector<int64_t>& values) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(Fresh(name));
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) t->add_int64_data(v);
    return t->name();
  }
  // A variable of the model as an initializer, in its own shape or `transpose`d.
  StatusOr<std::string> Variable(const std::string& name, const std::vector<int64_t>& perm = {}) {
    StatusOr<Tensor> v = t_.session->ReadVariable(name);
    if (!v.ok()) return v.status();
    const Tensor& x = *v;
    if (perm.empty()) return Floats(name, x.shape().dims(), x.data<float>());
    // HWIO -> OIHW for conv kernels: out[o][i][h][w] = in[h][w][i][o]
    const std::vector<int64_t> d = x.shape().dims();
    std::vector<int64_t> od;
    for (int64_t p : perm) od.push_back(d[p]);
    std::vector<float> out(static_cast<size_t>(x.num_elements()));
    std::vector<int64_t> stride(4, 1);  // of the input's dimensions
    for (int i = 2; i >= 0; --i) stride[i] = stride[i + 1] * d[i + 1];
    int64_t k = 0;
    for (int64_t a = 0; a < od[0]; ++a)
      for (int64_t b = 0; b < od[1]; ++b)
        for (int64_t c = 0; c < od[2]; ++c)
          for (int64_t e = 0; e < od[3]; ++e) {
            out[k++] = x.data<float>()[a * stride[perm[0]] + b * stride[perm[1]] +
                                       c * stride[perm[2]] + e * stride[perm[3]]];
          }
    return Floats(name, od, out.data());
  }

  // `v` in the layout a layer needs (only 4-D values have two).
  Value Layout(const Value& v, bool nchw, const std::string& layer) {
    if (v.shape.rank() != 4 || v.nchw == nchw) return v;
    onnx::NodeProto* n = Node("Transpose", {v.name}, layer);
    Ints(n, "perm", nchw ? std::vector<int64_t>{0, 3, 1, 2} : std::vector<int64_t>{0, 2, 3, 1});
    return Value{n->output(0), v.shape, nchw};
  }

  int64_t parameters() const { return parameters_; }

 private:
  std::string Fresh(const std::string& base) {
    const int n = used_[base]++;
    return n == 0 ? base : StrCat(base, "_", n);
  }

  TrainedModel& t_;
  onnx::GraphProto* g_;
  std::map<std::string, int> used_;
  int64_t parameters_ = 0;
};

// ONNX pads [h_begin, w_begin, h_end, w_end] for mpiflow's SAME/VALID window on (h, w).
std::vector<int64_t> Pads(const Shape& in, int64_t k, int64_t stride, const std::string& padding) {
  std::vector<int64_t> begin, end;
  for (int i : {1, 2}) {
    int64_t out = 0, before = 0;
    (void)WindowGeometry(in.dim(i), k, stride, padding, &out, &before);  // checked when built
    const int64_t total = std::max<int64_t>((out - 1) * stride + k - in.dim(i), 0);
    begin.push_back(before);
    end.push_back(padding == "SAME" ? total - before : 0);
  }
  return {begin[0], begin[1], end[0], end[1]};
}

void Activate(Writer& w, Value* v, Activation a, const std::string& layer) {
  const char* op = a == Activation::kRelu      ? "Relu"
                   : a == Activation::kTanh    ? "Tanh"
                   : a == Activation::kSigmoid ? "Sigmoid"
                                               : nullptr;
  if (op) v->name = w.Node(op, {v->name}, layer)->output(0);
}

// One layer: `x` in, its output (mpiflow's shape `out`) back.
StatusOr<Value> Layer(Writer& w, const LayerSpec& l, const Value& x, const Shape& out,
                      const std::map<std::string, Value>& earlier, bool* layer_norm) {
  const std::string& name = l.name;
  Value y{"", out, false};
  switch (l.type) {
    case LayerType::kDense: {
      StatusOr<std::string> k = w.Variable(name + "/kernel");
      if (!k.ok()) return k.status();
      StatusOr<std::string> b = w.Variable(name + "/bias");
      if (!b.ok()) return b.status();
      y.name = w.Node("Gemm", {x.name, *k, *b}, name)->output(0);
      Activate(w, &y, l.activation, name);
      return y;
    }
    case LayerType::kConv2D: {
      const Value in = w.Layout(x, true, name);
      StatusOr<std::string> k = w.Variable(name + "/kernel", {3, 2, 0, 1});  // HWIO -> OIHW
      if (!k.ok()) return k.status();
      StatusOr<std::string> b = w.Variable(name + "/bias");
      if (!b.ok()) return b.status();
      onnx::NodeProto* n = w.Node("Conv", {in.name, *k, *b}, name);
      Writer::Ints(n, "kernel_shape", {l.kernel, l.kernel});
      Writer::Ints(n, "strides", {l.stride, l.stride});
      Writer::Ints(n, "pads", Pads(x.shape, l.kernel, l.stride, l.padding));
      y = Value{n->output(0), out, true};
      Activate(w, &y, l.activation, name);
      return y;
    }
    case LayerType::kMaxPool:
    case LayerType::kAvgPool: {
      const Value in = w.Layout(x, true, name);
      // AveragePool's count_include_pad = 0 (its default) divides by the cells inside the
      // input, as mpiflow's avg_pool does.
      onnx::NodeProto* n =
          w.Node(l.type == LayerType::kMaxPool ? "MaxPool" : "AveragePool", {in.name}, name);
      Writer::Ints(n, "kernel_shape", {l.kernel, l.kernel});
      Writer::Ints(n, "strides", {l.stride, l.stride});
      Writer::Ints(n, "pads", Pads(x.shape, l.kernel, l.stride, l.padding));
      return Value{n->output(0), out, true};
    }
    case LayerType::kFlatten: {
      onnx::NodeProto* n = w.Node("Flatten", {w.Layout(x, false, name).name}, name);
      Writer::Int(n, "axis", 1);
      y.name = n->output(0);
      return y;
    }
    case LayerType::kReshape: {
      std::vector<int64_t> to = out.dims();  // (-1, example...)
      y.name =
          w.Node("Reshape", {w.Layout(x, false, name).name, w.Int64s(name + "/shape", to)}, name)
              ->output(0);
      return y;
    }
    case LayerType::kDropout:
      return x;  // inference: the identity
    case LayerType::kBatchNorm: {
      std::vector<std::string> v;
      for (const char* p : {"/gamma", "/beta", "/moving_mean", "/moving_variance"}) {
        StatusOr<std::string> s = w.Variable(name + p);
        if (!s.ok()) return s.status();
        v.push_back(*s);
      }
      // BatchNormalization wants the channels in dimension 1: (batch, c) as it is, images
      // NCHW, any other rank transposed there and back.
      const int r = x.shape.rank();
      std::vector<int64_t> to_first = {0, r - 1}, to_last = {0};  // (n, ..., c) <-> (n, c, ...)
      for (int i = 1; i + 1 < r; ++i) to_first.push_back(i), to_last.push_back(i + 1);
      to_last.push_back(1);
      Value in = r == 4 ? w.Layout(x, true, name) : x;
      if (r != 2 && r != 4) {
        onnx::NodeProto* t = w.Node("Transpose", {x.name}, name);
        Writer::Ints(t, "perm", to_first);
        in.name = t->output(0);
      }
      onnx::NodeProto* n = w.Node("BatchNormalization", {in.name, v[0], v[1], v[2], v[3]}, name);
      Writer::Float(n, "epsilon", l.epsilon);
      y = Value{n->output(0), out, r == 4};
      if (r != 2 && r != 4) {
        onnx::NodeProto* t = w.Node("Transpose", {y.name}, name);
        Writer::Ints(t, "perm", to_last);
        y.name = t->output(0);
      }
      return y;
    }
    case LayerType::kLayerNorm: {
      StatusOr<std::string> g = w.Variable(name + "/gamma");
      if (!g.ok()) return g.status();
      StatusOr<std::string> b = w.Variable(name + "/beta");
      if (!b.ok()) return b.status();
      onnx::NodeProto* n =
          w.Node("LayerNormalization", {w.Layout(x, false, name).name, *g, *b}, name);
      Writer::Int(n, "axis", -1);
      Writer::Float(n, "epsilon", l.epsilon);
      *layer_norm = true;
      y.name = n->output(0);
      return y;
    }
    case LayerType::kAdd: {
      const Value other = w.Layout(earlier.at(l.from), x.nchw, name);
      return Value{w.Node("Add", {x.name, other.name}, name)->output(0), out, x.nchw};
    }
    case LayerType::kEmbeddingBag: {
      // As mpiflow builds it: ids below 0 are no word (mask 0, row 0 gathered), the rows
      // summed under the mask, divided by the count (at least 1) for the mean.
      StatusOr<std::string> table = w.Variable(name + "/embeddings");
      if (!table.ok()) return table.status();
      const std::string kept = w.Node("Relu", {x.name}, name)->output(0);
      onnx::NodeProto* is_word = w.Node("Equal", {kept, x.name}, name);
      onnx::NodeProto* mask = w.Node("Cast", {is_word->output(0)}, name);
      Writer::Int(mask, "to", onnx::TensorProto::FLOAT);
      onnx::NodeProto* index = w.Node("Cast", {kept}, name);
      Writer::Int(index, "to", onnx::TensorProto::INT64);
      const std::string rows =
          w.Node("Gather", {*table, index->output(0)}, name)->output(0);  // (batch, n, dim)
      const std::string mask3 =
          w.Node("Unsqueeze", {mask->output(0), w.Int64s(name + "/axis2", {2})}, name)->output(0);
      const std::string masked = w.Node("Mul", {rows, mask3}, name)->output(0);
      const std::string axis1 = w.Int64s(name + "/axis1", {1});
      onnx::NodeProto* total = w.Node("ReduceSum", {masked, axis1}, name);
      Writer::Int(total, "keepdims", 0);
      y.name = total->output(0);
      if (l.combiner == Combiner::kMean) {
        onnx::NodeProto* count = w.Node("ReduceSum", {mask->output(0), axis1}, name);
        Writer::Int(count, "keepdims", 1);  // (batch, 1)
        const float one = 1.0f;
        const std::string at_least_one =
            w.Node("Max", {count->output(0), w.Floats(name + "/one", {1}, &one)}, name)->output(0);
        y.name = w.Node("Div", {y.name, at_least_one}, name)->output(0);
      }
      return y;
    }
  }
  return InvalidArgument("layer [", name, "]: type ", LayerTypeName(l.type),
                         " has no ONNX form here");
}

void SetType(onnx::ValueInfoProto* v, const std::string& name, const Shape& shape) {
  v->set_name(name);
  onnx::TypeProto::Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  for (int i = 0; i < shape.rank(); ++i) {
    onnx::TensorShapeProto::Dimension* d = t->mutable_shape()->add_dim();
    if (i == 0) {
      d->set_dim_param("batch");
    } else {
      d->set_dim_value(shape.dim(i));
    }
  }
}

void Meta(onnx::ModelProto* m, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* p = m->add_metadata_props();
  p->set_key(key);
  p->set_value(value);
}

Status WriteMessage(const google::protobuf::MessageLite& message, const std::string& path,
                    int64_t* bytes = nullptr) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return InvalidArgument("cannot write '", path, "'");
  if (!message.SerializeToOstream(&f)) return DataLoss("cannot serialise into '", path, "'");
  f.close();
  if (!f) return DataLoss("writing '", path, "' failed (disk full?)");
  if (bytes) *bytes = static_cast<int64_t>(message.ByteSizeLong());
  return Status::OK();
}

// A float32 tensor (n, ...) as an ONNX TensorProto named `name`.
onnx::TensorProto ToProto(const std::string& name, const Tensor& t) {
  onnx::TensorProto p;
  p.set_name(name);
  p.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : t.shape().dims()) p.add_dims(d);
  p.set_raw_data(t.data<float>(), static_cast<size_t>(t.num_elements()) * sizeof(float));
  return p;
}

// The first `n` examples of the split through mpiflow's inference path, in ONNX's test-data
// layout: input_0.pb, output_0.pb (logits), output_1.pb (probabilities).
Status WriteTestData(TrainedModel& t, const std::string& dir, int64_t n) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return InvalidArgument("cannot create the test-data folder '", dir,
                           "': ", std::strerror(errno));
  }
  const int64_t size = t.data.example_size();
  std::vector<int64_t> dims = t.data.example.dims();  // (n, example...)
  dims.insert(dims.begin(), n);
  Tensor x(DType::kFloat32, Shape(dims));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < size; ++j) x.data<float>()[i * size + j] = t.data.Value(i, j);
  }
  std::vector<Tensor> out;
  MPIFLOW_RETURN_IF_ERROR(t.session->Run({{t.model.features, x}},
                                         {t.model.inference_logits, t.probabilities}, {}, &out));
  MPIFLOW_RETURN_IF_ERROR(WriteMessage(ToProto("features", x), dir + "/input_0.pb"));
  MPIFLOW_RETURN_IF_ERROR(WriteMessage(ToProto("logits", out[0]), dir + "/output_0.pb"));
  return WriteMessage(ToProto("probabilities", out[1]), dir + "/output_1.pb");
}

}  // namespace

StatusOr<OnnxExportResult> ExportOnnx(TrainedModel& t, const OnnxExportOptions& o) {
  if (o.path.empty()) return InvalidArgument("no ONNX file named (--onnx FILE)");
  onnx::ModelProto model;
  model.set_ir_version(kIrVersion);
  model.set_producer_name("mpiflow");
  model.set_model_version(t.step);
  model.set_doc_string(StrCat("mpiflow model '", t.spec.name, "' from ", t.spec.source,
                              ", checkpoint '", t.checkpoint, "' (step ", t.step, ")"));
  onnx::GraphProto* g = model.mutable_graph();
  g->set_name(t.spec.name);
  Writer w(t, g);
  Shape in_shape = t.model.features.shape();  // (-1, example...)
  SetType(g->add_input(), "features", in_shape);
  Value x{"features", in_shape, false};
  std::map<std::string, Value> earlier;
  bool layer_norm = false;
  for (size_t i = 0; i < t.spec.layers.size(); ++i) {
    StatusOr<Value> y =
        Layer(w, t.spec.layers[i], x, t.model.layers[i].output, earlier, &layer_norm);
    if (!y.ok()) return y.status();
    x = *y;
    earlier[t.spec.layers[i].name] = x;
  }
  const Shape logits = t.model.inference_logits.shape();  // (-1, classes)
  onnx::NodeProto* id = g->add_node();  // the last layer's value under a fixed name
  id->set_op_type("Identity");
  id->set_name("logits");
  id->add_input(x.name);
  id->add_output("logits");
  onnx::NodeProto* sm = g->add_node();
  sm->set_op_type("Softmax");
  sm->set_name("probabilities");
  sm->add_input("logits");
  sm->add_output("probabilities");
  Writer::Int(sm, "axis", -1);
  SetType(g->add_output(), "logits", logits);
  SetType(g->add_output(), "probabilities", logits);

  OnnxExportResult r;
  r.opset = layer_norm ? 17 : 13;  // LayerNormalization is in 17; the rest in 13
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(r.opset);
  Meta(&model, "mpiflow.model", t.spec.source);
  Meta(&model, "mpiflow.checkpoint", t.checkpoint);
  Meta(&model, "mpiflow.step", std::to_string(t.step));
  Meta(&model, "mpiflow.features",
       t.data.is_float ? "the stored float32 values x scale + offset"
                       : "the stored uint8 values x scale + offset");
  Meta(&model, "mpiflow.scale", StrCat(t.data.scale));
  Meta(&model, "mpiflow.offset", StrCat(t.data.offset));
  std::string classes;
  for (const std::string& c : t.data.class_names) classes += (classes.empty() ? "" : "\n") + c;
  if (!classes.empty()) Meta(&model, "mpiflow.classes", classes);
  r.nodes = g->node_size();
  r.parameters = w.parameters();
  if (r.parameters * 4 > kProtobufLimit) {
    return InvalidArgument("the model has ", r.parameters,
                           " parameters: more than one ONNX file holds (2 GiB); mpiflow-export "
                           "does not write ONNX's external data yet");
  }

  // ONNX's own checks: the checker, then shape inference that fails on any node it cannot type
  // and on an output whose declared shape differs from the inferred one.
  try {
    onnx::checker::check_model(model);
    onnx::ModelProto inferred = model;
    onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true,
                                                                   /*strict_mode=*/1));
  } catch (const std::exception& e) {
    return Internal(
        "the exported graph fails ONNX's checks (an mpiflow bug; please report it "
        "with the model file): ",
        e.what());
  }
  MPIFLOW_RETURN_IF_ERROR(WriteMessage(model, o.path, &r.bytes));
  if (!o.test_data_dir.empty()) {
    r.test_examples = std::min(o.test_examples, t.data.count);
    if (r.test_examples < 1) return InvalidArgument("no examples for the test data");
    MPIFLOW_RETURN_IF_ERROR(WriteTestData(t, o.test_data_dir, r.test_examples));
  }
  return r;
}

}  // namespace mpiflow
