// Shape functions, as a table: each row builds one op on placeholders of the given dtypes and
// shapes and expects either an output shape or an error containing the given text.
#include <gtest/gtest.h>

#include "mpiflow/graph.h"
#include "mpiflow/ops.h"

namespace mpiflow {
namespace {

struct In {
  DType dtype;
  Shape shape;
};

struct Row {
  std::string op;
  std::vector<In> inputs;
  AttrMap attrs;
  Shape want;         // output 0 shape when `error` is empty
  std::string error;  // substring of the error message
};

const DType F = DType::kFloat32;
const DType I32 = DType::kInt32;
using L = std::vector<int64_t>;

std::vector<Row> Rows() {
  return {
      // binary broadcasting
      {"Add", {{F, {2, 3}}, {F, {3}}}, {}, {2, 3}, ""},
      {"Mul", {{F, {-1, 1}}, {F, {1, 5}}}, {}, {-1, 5}, ""},
      {"Sub", {{F, {4, 1, 3}}, {F, {2, 1}}}, {}, {4, 2, 3}, ""},
      {"Add", {{F, {2, 3}}, {F, {4}}}, {}, {}, "shapes [2,3] and [4] cannot be broadcast"},
      {"Div", {{F, {2}}, {DType::kFloat64, {2}}}, {}, {}, "different dtypes (float32 vs float64)"},
      {"Add", {{DType::kBool, {2}}, {DType::kBool, {2}}}, {}, {}, "input 0 has dtype bool"},
      {"AddN", {{F, {2, 2}}, {F, {2, 3}}}, {}, {}, "input 1 has shape [2,3], input 0 has [2,2]"},
      {"AddN", {{F, {-1, 2}}, {F, {5, 2}}}, {}, {-1, 2}, ""},
      // unary
      {"Exp", {{F, {7}}}, {}, {7}, ""},
      {"Relu", {{I32, {7}}}, {}, {}, "input 0 has dtype int32; expected one of float32, float64"},
      // matmul
      {"MatMul",
       {{F, {-1, 784}}, {F, {784, 256}}},
       {{"transpose_a", false}, {"transpose_b", false}},
       {-1, 256},
       ""},
      {"MatMul",
       {{F, {5, 3}}, {F, {4, 3}}},
       {{"transpose_a", false}, {"transpose_b", true}},
       {5, 4},
       ""},
      {"MatMul",
       {{F, {3, 5}}, {F, {3, 4}}},
       {{"transpose_a", true}, {"transpose_b", false}},
       {5, 4},
       ""},
      {"MatMul",
       {{F, {5, 3}}, {F, {4, 2}}},
       {{"transpose_a", false}, {"transpose_b", false}},
       {},
       "inner dimensions differ: a is [5,3], b is [4,2] (3 vs 4)"},
      {"MatMul",
       {{F, {5}}, {F, {5, 2}}},
       {{"transpose_a", false}, {"transpose_b", false}},
       {},
       "input 0 must have rank 2, got shape [5]"},
      // reductions
      {"Sum", {{F, {2, 3, 4}}}, {{"axes", L{1}}, {"keep_dims", false}}, {2, 4}, ""},
      {"Mean", {{F, {2, 3, 4}}}, {{"axes", L{-1, 0}}, {"keep_dims", true}}, {1, 3, 1}, ""},
      {"Max", {{F, {2, 3}}}, {{"axes", L{}}, {"keep_dims", false}}, {}, ""},
      {"Sum",
       {{F, {2, 3}}},
       {{"axes", L{2}}, {"keep_dims", false}},
       {},
       "axis 2 is out of range for rank 2"},
      {"Sum", {{F, {2, 3}}}, {{"axes", L{1, -1}}, {"keep_dims", false}}, {}, "axis -1 is repeated"},
      // array
      {"Reshape", {{F, {-1, 784}}}, {{"shape", L{-1, 28, 28, 1}}}, {-1, 28, 28, 1}, ""},
      {"Reshape", {{F, {6, 4}}}, {{"shape", L{-1, 8}}}, {3, 8}, ""},
      {"Reshape",
       {{F, {6, 4}}},
       {{"shape", L{5, -1}}},
       {},
       "cannot reshape [6,4] (24 elements) to [5,?]"},
      {"Reshape", {{F, {6}}}, {{"shape", L{-1, -1}}}, {}, "has more than one -1"},
      {"Transpose", {{F, {2, 3, 4}}}, {{"perm", L{2, 0, 1}}}, {4, 2, 3}, ""},
      {"Transpose", {{F, {2, 3}}}, {{"perm", L{0, 0}}}, {}, "is not a permutation of 0..1"},
      {"Concat", {{F, {2, 3}}, {F, {2, 5}}}, {{"axis", int64_t{1}}}, {2, 8}, ""},
      {"Concat",
       {{F, {2, 3}}, {F, {3, 3}}},
       {{"axis", int64_t{1}}},
       {},
       "input 1 has shape [3,3], which differs from [2,3] outside axis 1"},
      {"Slice", {{F, {4, 6}}}, {{"begin", L{1, 2}}, {"size", L{2, -1}}}, {2, 4}, ""},
      {"Slice",
       {{F, {4, 6}}},
       {{"begin", L{3, 0}}, {"size", L{2, 1}}},
       {},
       "slice [3, 5) of dimension 0 is out of range for input [4,6]"},
      {"Cast", {{I32, {3}}}, {{"dtype", DType::kFloat16}}, {3}, ""},
      {"ArgMax", {{F, {-1, 10}}}, {{"axis", int64_t{1}}}, {-1}, ""},
      {"Equal", {{DType::kInt64, {-1}}, {DType::kInt64, {-1}}}, {}, {-1}, ""},
      {"Gather", {{F, {100, 16}}, {I32, {4, 5}}}, {}, {4, 5, 16}, ""},
      {"Gather",
       {{F, {100, 16}}, {F, {4}}},
       {},
       {},
       "input 1 has dtype float32; expected one of int32, int64"},
      // nn
      {"BiasAdd", {{F, {-1, 10}}, {F, {10}}}, {}, {-1, 10}, ""},
      {"BiasAdd",
       {{F, {-1, 10}}, {F, {9}}},
       {},
       {},
       "bias [9] does not match the last dimension of x [?,10]"},
      {"Softmax", {{F, {}}}, {}, {}, "input must have rank >= 1"},
      {"SparseSoftmaxCrossEntropyWithLogits", {{F, {-1, 10}}, {I32, {64}}}, {}, {64}, ""},
      {"SparseSoftmaxCrossEntropyWithLogits",
       {{F, {32, 10}}, {I32, {64}}},
       {},
       {},
       "logits [32,10] and labels [64] have different batch sizes"},
      {"Conv2D",
       {{F, {-1, 28, 28, 1}}, {F, {5, 5, 1, 32}}},
       {{"strides", L{1, 1}}, {"padding", std::string("SAME")}},
       {-1, 28, 28, 32},
       ""},
      {"Conv2D",
       {{F, {8, 28, 28, 3}}, {F, {5, 5, 3, 16}}},
       {{"strides", L{2, 2}}, {"padding", std::string("VALID")}},
       {8, 12, 12, 16},
       ""},
      {"Conv2D",
       {{F, {8, 7, 7, 3}}, {F, {3, 3, 3, 4}}},
       {{"strides", L{2, 2}}, {"padding", std::string("SAME")}},
       {8, 4, 4, 4},
       ""},
      {"Conv2D",
       {{F, {8, 28, 28, 3}}, {F, {5, 5, 1, 16}}},
       {{"strides", L{1, 1}}, {"padding", std::string("SAME")}},
       {},
       "input has 3 channels (shape [8,28,28,3]) but the filter expects 1"},
      {"Conv2D",
       {{F, {8, 28, 28, 1}}, {F, {5, 5, 1, 16}}},
       {{"strides", L{1, 1}}, {"padding", std::string("FULL")}},
       {},
       "padding must be SAME or VALID, got 'FULL'"},
      {"Conv2D",
       {{F, {8, 3, 3, 1}}, {F, {5, 5, 1, 16}}},
       {{"strides", L{1, 1}}, {"padding", std::string("VALID")}},
       {},
       "window 5 is larger than the input dimension 3"},
      {"MaxPool",
       {{F, {-1, 28, 28, 32}}},
       {{"ksize", L{2, 2}}, {"strides", L{2, 2}}, {"padding", std::string("VALID")}},
       {-1, 14, 14, 32},
       ""},
      {"AvgPool",
       {{F, {1, 5, 5, 2}}},
       {{"ksize", L{3, 3}}, {"strides", L{2, 2}}, {"padding", std::string("SAME")}},
       {1, 3, 3, 2},
       ""},
      {"MaxPool",
       {{F, {1, 5, 5, 2}}},
       {{"ksize", L{0, 2}}, {"strides", L{2, 2}}, {"padding", std::string("SAME")}},
       {},
       "ksize must be two positive integers"},
      {"Dropout",
       {{F, {4, 4}}},
       {{"rate", 1.0}, {"seed", int64_t{1}}},
       {},
       "rate must be in [0, 1), got 1"},
      // state and training
      {"Assign", {{F, {3}}, {F, {4}}}, {}, {}, "value shape [4] does not match the variable's [3]"},
      {"ApplyGradientDescent", {{F, {3, 2}}, {F, {}}, {F, {3, 2}}}, {}, {3, 2}, ""},
      {"ApplyGradientDescent", {{F, {3, 2}}, {F, {1}}, {F, {3, 2}}}, {}, {}, "lr must be a scalar"},
      {"ApplyMomentum",
       {{F, {3}}, {F, {4}}, {F, {}}, {F, {3}}},
       {{"momentum", 0.9}, {"nesterov", false}},
       {},
       "slot 1 has shape [4], the variable has [3]"},
      {"ApplyAdam",
       {{F, {3}}, {F, {3}}, {F, {3}}, {F, {}}, {DType::kInt64, {}}, {F, {2}}},
       {{"beta1", 0.9}, {"beta2", 0.999}, {"epsilon", 1e-7}},
       {},
       "gradient shape [2] does not match the variable's [3]"},
  };
}

TEST(ShapeFnTest, Table) {
  int row_index = 0;
  for (const Row& row : Rows()) {
    SCOPED_TRACE("row " + std::to_string(row_index++) + ": " + row.op);
    Graph g(BuiltinOps());
    NodeSpec spec;
    spec.op = row.op;
    spec.name = "node";
    spec.attrs = row.attrs;
    for (size_t i = 0; i < row.inputs.size(); ++i) {
      NodeSpec p;
      p.op = "Placeholder";
      p.name = "in" + std::to_string(i);
      p.attrs = {{"dtype", row.inputs[i].dtype}, {"shape", row.inputs[i].shape}};
      StatusOr<Node*> n = g.AddNode(p);
      ASSERT_TRUE(n.ok()) << n.status();
      spec.inputs.push_back(Output(*n, 0));
    }
    StatusOr<Node*> n = g.AddNode(spec);
    if (row.error.empty()) {
      ASSERT_TRUE(n.ok()) << n.status();
      EXPECT_EQ((*n)->output_shape(0), row.want) << (*n)->output_shape(0).ToString();
    } else {
      ASSERT_FALSE(n.ok()) << "expected an error containing: " << row.error;
      EXPECT_NE(n.status().message().find(row.error), std::string::npos) << n.status().message();
      EXPECT_NE(n.status().message().find("node 'node'"), std::string::npos)
          << "the error must name the node: " << n.status().message();
    }
  }
}

TEST(ShapeFnTest, ArityAndUnknownOpAreErrors) {
  Graph g(BuiltinOps());
  StatusOr<Node*> n = g.AddNode({"x", "NoSuchOp", {}, {}, {}, ""});
  EXPECT_EQ(n.status().message(), "unknown op 'NoSuchOp' for node 'x'");
  n = g.AddNode({"y", "Exp", {}, {}, {}, ""});
  EXPECT_EQ(n.status().message(), "Exp node 'y': expected 1 inputs, got 0");
}

TEST(ShapeFnTest, ScopeKeepsTheFirstErrorAndNamesStayUnique) {
  Scope s = Scope::NewRootScope();
  Output a = ops::Placeholder(s, DType::kFloat32, Shape{2, 3});
  Output bad = ops::MatMul(s, a, a);  // inner dims differ
  Output later = ops::Exp(s, bad);    // skipped: an input is invalid
  EXPECT_FALSE(bad.valid());
  EXPECT_FALSE(later.valid());
  EXPECT_NE(s.status().message().find("inner dimensions differ"), std::string::npos);
  Scope t = Scope::NewRootScope();
  Output x = ops::Placeholder(t, DType::kFloat32, Shape{2});
  EXPECT_EQ(ops::Exp(t, x).node->name(), "Exp");
  EXPECT_EQ(ops::Exp(t, x).node->name(), "Exp_1");
  EXPECT_EQ(ops::Exp(t.NewSubScope("layer"), x).node->name(), "layer/Exp");
}

}  // namespace
}  // namespace mpiflow
