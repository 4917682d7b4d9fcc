// Graph text format: round trip (structure, fingerprint, results), DOT, and error lines.
#include "mpiflow/graph_io.h"

#include <gtest/gtest.h>

#include "mpiflow/models.h"
#include "mpiflow/optimizer.h"
#include "tests/test_util.h"

namespace mpiflow {
namespace {

TEST(GraphIoTest, RoundTripsATrainingGraph) {
  Scope s = Scope::NewRootScope();
  StatusOr<Model> m = BuildModel(s, "cnn", ModelInput{Shape{28, 28, 1}, 10}, 1);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(Minimize(s, m->loss, OptimizerOptions()).ok());
  ASSERT_NE(ops::InitOp(s), nullptr);
  const std::string text = GraphToText(*s.graph());
  Graph loaded(BuiltinOps());
  ASSERT_TRUE(GraphFromText(text, &loaded).ok());
  EXPECT_EQ(loaded.num_nodes(), s.graph()->num_nodes());
  EXPECT_EQ(loaded.Fingerprint(), s.graph()->Fingerprint());
  EXPECT_EQ(GraphToText(loaded), text);
  EXPECT_EQ(loaded.variables().size(), s.graph()->variables().size());
  EXPECT_EQ(text.substr(0, 16), "mpiflow-graph 1\n");
  // the loaded graph computes the same initial value
  Tensor a = testing::RunOne(s, Output(s.graph()->FindNode("conv_1/kernel/init")));
  Scope ls(&loaded);
  Tensor b = testing::RunOne(ls, Output(loaded.FindNode("conv_1/kernel/init")));
  EXPECT_TRUE(a.BitEqual(b));
}

TEST(GraphIoTest, NamesWithSpecialCharactersSurvive) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s.WithOpName("odd name,=%"), testing::F32({1}, {2}));
  ops::Exp(s.WithOpName("y"), x);
  Graph loaded(BuiltinOps());
  ASSERT_TRUE(GraphFromText(GraphToText(*s.graph()), &loaded).ok());
  ASSERT_NE(loaded.FindNode("odd name,=%"), nullptr);
  EXPECT_EQ(loaded.FindNode("y")->input(0).node->name(), "odd name,=%");
}

TEST(GraphIoTest, ErrorsNameTheLine) {
  Graph g(BuiltinOps());
  EXPECT_EQ(GraphFromText("tensorflow 1\n", &g).message(),
            "graph text line 1: not an mpiflow graph (expected the header 'mpiflow-graph "
            "<version>')");
  Graph g2(BuiltinOps());
  EXPECT_EQ(GraphFromText("mpiflow-graph 9\n", &g2).message(),
            "graph text line 1: format version 9 is not supported (this build reads 1)");
  Graph g3(BuiltinOps());
  EXPECT_EQ(GraphFromText("mpiflow-graph 1\nnode a Exp in=b:0\n", &g3).message(),
            "graph text line 2: input of 'a': no node named 'b' in the graph");
  Graph g4(BuiltinOps());
  EXPECT_EQ(GraphFromText("mpiflow-graph 1\nnode a Frobnicate\n", &g4).message(),
            "graph text line 2: unknown op 'Frobnicate' for node 'a'");
  // A blank first line is not a header; a line of spaces later is blank (both found by
  // fuzz/graph_text_fuzzer.cc: the first skipped the header check, the second read a token
  // that was not there).
  Graph g6(BuiltinOps());
  EXPECT_EQ(GraphFromText("\n \nnode a Exp\n", &g6).message(),
            "graph text line 1: not an mpiflow graph (expected the header 'mpiflow-graph "
            "<version>')");
  Graph g7(BuiltinOps());
  EXPECT_TRUE(GraphFromText("mpiflow-graph 1\n   \n\n", &g7).ok());
  Graph g5(BuiltinOps());
  EXPECT_EQ(LoadGraph("/nonexistent.mpg", &g5).message(),
            "cannot open graph file '/nonexistent.mpg'");
}

TEST(GraphIoTest, DotShowsNodesAndEdges) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s.WithOpName("x"), DType::kFloat32, Shape{-1, 3});
  ops::Exp(s.WithOpName("y"), x);
  const std::string dot = GraphToDot(*s.graph());
  EXPECT_NE(dot.find("digraph mpiflow {"), std::string::npos);
  EXPECT_NE(dot.find("n0 [label=\"x\\nPlaceholder\""), std::string::npos);
  EXPECT_NE(dot.find("n0 -> n1 [label=\"float32[?,3]\""), std::string::npos);
}

}  // namespace
}  // namespace mpiflow
