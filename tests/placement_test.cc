// Placement and partition on small graphs: device strings, hints and colocation honoured, bad
// hints rejected with the node's name, the stage split by the cost model, and the transfers of
// a run (expected Send/Recv edges, control edges, remote fetches; tags unique and stable).
#include "mpiflow/placement.h"

#include <gtest/gtest.h>

#include "mpiflow/gradients.h"
#include "mpiflow/models.h"
#include "mpiflow/ops.h"
#include "mpiflow/optimizer.h"

namespace mpiflow {
namespace {

TEST(PlacementTest, ParsesDevices) {
  StatusOr<DeviceSpec> d = ParseDevice("/rank:3/cpu:0");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->rank, 3);
  EXPECT_EQ(d->type, "cpu");
  d = ParseDevice("/rank:1");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->rank, 1);
  EXPECT_EQ(d->type, "");
  d = ParseDevice("/gpu:2");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->rank, -1);
  EXPECT_EQ(d->index, 2);
  EXPECT_EQ(DeviceString(2), "/rank:2/cpu:0");
  for (const char* bad :
       {"", "rank:1", "/rank:x", "/tpu:0", "/cpu:0/rank:1", "/rank:1/rank:2", "/rank"}) {
    StatusOr<DeviceSpec> b = ParseDevice(bad);
    EXPECT_FALSE(b.ok()) << bad;
    if (!b.ok()) {
      EXPECT_NE(b.status().message().find("/rank:R/cpu:0"), std::string::npos);
    }
  }
}

// x (?, 4) -> dense a (hint rank 0) -> relu -> dense b (hint rank 1) -> mean: loss; SGD.
struct TwoLayers {
  Scope s = Scope::NewRootScope();
  Output x, h, y, loss, w1, w2;
  TrainOp train;
  TwoLayers(const std::string& first = "/rank:0", const std::string& second = "/rank:1") {
    x = ops::Placeholder(s.WithOpName("x"), DType::kFloat32, Shape{-1, 4});
    const Scope a = s.NewSubScope("a").WithDevice(first);
    w1 = ops::Variable(a.WithOpName("w"), ops::Zeros(a, Shape{4, 3}));
    h = ops::Relu(a, ops::MatMul(a, x, w1));
    const Scope b = s.NewSubScope("b").WithDevice(second);
    w2 = ops::Variable(b.WithOpName("w"), ops::Zeros(b, Shape{3, 2}));
    y = ops::MatMul(b, h, w2);
    loss = ops::Mean(b.WithOpName("loss"), y, {0, 1});
    std::vector<Output> grads;
    EXPECT_TRUE(AddGradients(s, {loss}, {w1, w2}, {}, &grads).ok());
    OptimizerOptions o;
    o.kind = OptimizerKind::kMomentum;
    StatusOr<TrainOp> t = ApplyGradients(s, grads, {w1, w2}, o);
    EXPECT_TRUE(t.ok()) << t.status();
    if (t.ok()) train = *t;
    EXPECT_TRUE(s.status().ok()) << s.status();
  }
};

TEST(PlacementTest, HintsAndColocationAreHonoured) {
  TwoLayers m;
  const Graph& g = *m.s.graph();
  StatusOr<Placement> p = PlaceGraph(g, {2, 0, {}, {}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->RankOf(m.w1.node), 0);
  EXPECT_EQ(p->RankOf(m.h.node), 0);
  EXPECT_EQ(p->RankOf(m.w2.node), 1);
  EXPECT_EQ(p->RankOf(m.loss.node), 1);
  // Every gradient op runs with the forward op it differentiates; every update and slot with its
  // variable.
  int gradients = 0, slots = 0;
  for (int id = 0; id < g.num_nodes(); ++id) {
    const Node* n = g.node(id);
    if (n->colocation() != n->name()) {
      const Node* with = g.FindNode(n->colocation());
      ASSERT_NE(with, nullptr) << n->name();
      EXPECT_EQ(p->RankOf(n), p->RankOf(with)) << n->name() << " with " << with->name();
      gradients += n->name().rfind("gradients/", 0) == 0;
      slots += n->name().find("/momentum") != std::string::npos && n->op() == "Variable";
    }
    if (n->op() == "ApplyMomentum") {
      EXPECT_EQ(p->RankOf(n), p->RankOf(n->input(0).node)) << n->name();
      EXPECT_EQ(p->RankOf(n), p->RankOf(n->input(1).node)) << n->name() << "'s slot";
    }
  }
  EXPECT_GT(gradients, 4);
  EXPECT_EQ(slots, 2);
}

TEST(PlacementTest, TheFingerprintFollowsThePlacement) {
  TwoLayers a, b, swapped("/rank:1", "/rank:0");
  StatusOr<Placement> pa = PlaceGraph(*a.s.graph(), {2, 0, {}, {}});
  StatusOr<Placement> pb = PlaceGraph(*b.s.graph(), {2, 0, {}, {}});
  StatusOr<Placement> ps = PlaceGraph(*swapped.s.graph(), {2, 0, {}, {}});
  ASSERT_TRUE(pa.ok() && pb.ok() && ps.ok());
  EXPECT_EQ(pa->Fingerprint(), pb->Fingerprint());  // the same graph, placed on another "rank"
  EXPECT_NE(pa->Fingerprint(), ps->Fingerprint());
  StatusOr<Placement> three = PlaceGraph(*a.s.graph(), {3, 0, {}, {}});
  ASSERT_TRUE(three.ok());
  EXPECT_NE(pa->Fingerprint(), three->Fingerprint());
}

TEST(PlacementTest, BadHintsNameTheNode) {
  {
    TwoLayers m("/rank:0", "/rank:5");
    StatusOr<Placement> p = PlaceGraph(*m.s.graph(), {2, 0, {}, {}});
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.status().message().find("asks for device '/rank:5', but the job has 2 rank(s)"),
              std::string::npos)
        << p.status();
    EXPECT_NE(p.status().message().find("node 'b/"), std::string::npos) << p.status();
  }
  {
    TwoLayers m("/rank:0", "/rank:1/gpu:0");
    StatusOr<Placement> p = PlaceGraph(*m.s.graph(), {2, 0, {}, {}});
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.status().message().find("on CPUs only"), std::string::npos) << p.status();
  }
  {
    TwoLayers m("/rank:0", "/disk:1");
    StatusOr<Placement> p = PlaceGraph(*m.s.graph(), {2, 0, {}, {}});
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.status().message().find("node 'b/"), std::string::npos) << p.status();
    EXPECT_NE(p.status().message().find("unknown or repeated part 'disk:1'"), std::string::npos)
        << p.status();
  }
  {
    // A variable hinted to one rank and its reader's gradient colocated with... the variable's
    // update hinted elsewhere: one group, two ranks.
    Scope s = Scope::NewRootScope();
    Output w = ops::Variable(s.WithOpName("w").WithDevice("/rank:0"), ops::Zeros(s, Shape{2}));
    Node* update = ops::AssignAdd(s.WithDevice("/rank:1"), w, ops::Zeros(s, Shape{2})).node;
    ASSERT_NE(update, nullptr);
    StatusOr<Placement> p = PlaceGraph(*s.graph(), {2, 0, {}, {}});
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.status().message().find("which it must run with, asks for 0"), std::string::npos)
        << p.status();
  }
}

// x (batch, in) -> relu(x * kernel + bias) (batch, units), variables under `s`.
Output DenseRelu(const Scope& s, Output x, int64_t units, int64_t seed) {
  const int64_t in = x.shape().dim(1);
  Output w = ops::Variable(s.WithOpName("kernel"), ops::GlorotUniform(s, Shape{in, units}, seed));
  Output b = ops::Variable(s.WithOpName("bias"), ops::Zeros(s, Shape{units}));
  return ops::Relu(s, ops::BiasAdd(s, ops::MatMul(s, x, w), b));
}

TEST(PlacementTest, StagesCutTheForwardPassByCost) {
  // Four equal 256-wide layers: two stages take two layers each, with their variables, their
  // gradients and their updates.
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s.WithOpName("x"), DType::kFloat32, Shape{-1, 256});
  Output h = x;
  for (int l = 0; l < 4; ++l) h = DenseRelu(s.NewSubScope(StrCat("layer", l)), h, 256, l);
  Output loss = ops::Mean(s.WithOpName("loss"), h, {0, 1});
  std::vector<Output> vars;
  for (const VariableInfo& v : s.graph()->variables()) vars.push_back(Output(v.variable));
  std::vector<Output> grads;
  ASSERT_TRUE(AddGradients(s, {loss}, vars, {}, &grads).ok());
  ASSERT_TRUE(ApplyGradients(s, grads, vars, {}).ok());
  const Graph& g = *s.graph();
  StatusOr<Placement> p = PlaceGraph(g, {2, 2, {loss}, {}});
  ASSERT_TRUE(p.ok()) << p.status();
  for (int l = 0; l < 4; ++l) {
    const int stage = l < 2 ? 0 : 1;
    EXPECT_EQ(p->RankOf(g.FindNode(StrCat("layer", l, "/kernel"))), stage) << l;
    EXPECT_EQ(p->RankOf(g.FindNode(StrCat("layer", l, "/bias"))), stage) << l;
    EXPECT_EQ(p->RankOf(g.FindNode(StrCat("layer", l, "/MatMul"))), stage) << l;
  }
  const std::string report = DescribePlacement(g, *p, {loss});
  EXPECT_NE(report.find("layer0/kernel (Variable) -> /rank:0/cpu:0"), std::string::npos);
  EXPECT_NE(report.find("cut rank 0 -> rank 1: 1024 bytes per example forward"), std::string::npos)
      << report;
  // More stages than forward ops is an error that says so.
  StatusOr<Placement> many = PlaceGraph(g, {64, 64, {loss}, {}});
  ASSERT_FALSE(many.ok());
  EXPECT_NE(many.status().message().find("fewer than the 64 pipeline stages"), std::string::npos)
      << many.status();
}

TEST(PartitionTest, TransfersOfARun) {
  TwoLayers m;
  const Graph& g = *m.s.graph();
  StatusOr<Placement> p = PlaceGraph(g, {2, 0, {}, {}});
  ASSERT_TRUE(p.ok());
  // Forward only: loss needs h from rank 0; the fetch of h on rank 0 goes nowhere, the loss
  // (made on rank 1) goes to rank 0.
  std::vector<char> needed(g.num_nodes(), 0);
  for (const Node* n :
       {m.w1.node, m.h.node, m.h.node->input(0).node, m.w2.node, m.y.node, m.loss.node}) {
    needed[n->id()] = 1;
  }
  std::vector<Transfer> t = PartitionRun(g, *p, needed, {m.x}, {m.loss, m.h});
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].from, m.h);
  EXPECT_EQ(t[0].src, 0);
  EXPECT_EQ(t[0].dst, 1);
  EXPECT_FALSE(t[0].control);
  EXPECT_EQ(t[1].from, m.loss);
  EXPECT_EQ(t[1].src, 1);
  EXPECT_EQ(t[1].dst, 0);
  EXPECT_EQ(t[0].tag, 0);
  EXPECT_EQ(t[1].tag, 1);
  // A control edge across ranks is a zero-byte transfer; one that rides with data is not added.
  Scope c = m.s.WithControlDependencies({m.w1.node, m.h.node}).WithDevice("/rank:1");
  Node* after = ops::NoOp(c);
  ASSERT_NE(after, nullptr);
  StatusOr<Placement> p2 = PlaceGraph(g, {2, 0, {}, {}});
  ASSERT_TRUE(p2.ok());
  needed.resize(g.num_nodes(), 0);
  needed[after->id()] = 1;
  std::vector<Transfer> t2 = PartitionRun(g, *p2, needed, {m.x}, {m.loss});
  int control = 0;
  for (const Transfer& tr : t2) {
    if (!tr.control) continue;
    ++control;
    EXPECT_EQ(tr.from.node, m.w1.node);  // h's edge carries data to rank 1 already
    EXPECT_EQ(tr.dst, 1);
  }
  EXPECT_EQ(control, 1);
  // Tags: 0..n-1 in order, and the same list when computed again.
  std::vector<Transfer> again = PartitionRun(g, *p2, needed, {m.x}, {m.loss});
  ASSERT_EQ(again.size(), t2.size());
  for (size_t i = 0; i < t2.size(); ++i) {
    EXPECT_EQ(t2[i].tag, static_cast<int>(i));
    EXPECT_EQ(again[i].from, t2[i].from);
    EXPECT_EQ(again[i].dst, t2[i].dst);
    EXPECT_EQ(again[i].control, t2[i].control);
  }
}

TEST(PartitionTest, AWholeTrainingStepPartitionsIntoSendsAndRecvsThatPair) {
  TwoLayers m;
  const Graph& g = *m.s.graph();
  StatusOr<Placement> p = PlaceGraph(g, {2, 0, {}, {}});
  ASSERT_TRUE(p.ok());
  std::vector<char> needed(g.num_nodes(), 0);
  std::vector<const Node*> stack = {m.train.train};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (needed[n->id()]) continue;
    needed[n->id()] = 1;
    for (const Output& in : n->inputs()) stack.push_back(in.node);
    for (const Node* c : n->control_inputs()) stack.push_back(c);
  }
  std::vector<Transfer> t = PartitionRun(g, *p, needed, {m.x}, {m.loss});
  // Forward: h to rank 1; backward: the gradient of h to rank 0; the loss to rank 0; the
  // learning rate (rank 0's) to rank 1's update; control edges of the updates to the train op.
  bool forward = false, backward = false;
  for (const Transfer& tr : t) {
    EXPECT_NE(tr.src, tr.dst);
    if (tr.from == m.h && tr.dst == 1) forward = true;
    if (!tr.control && tr.src == 1 && tr.dst == 0 &&
        tr.from.node->name().rfind("gradients/", 0) == 0 && tr.from.shape() == Shape({-1, 3})) {
      backward = true;
    }
  }
  EXPECT_TRUE(forward);
  EXPECT_TRUE(backward);
}

}  // namespace
}  // namespace mpiflow
