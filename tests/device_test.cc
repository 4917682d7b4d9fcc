// The runtime's device handling without a GPU: a fake device (host memory that calls itself
// device memory, with a few kernels of its own) installed through RegisterDevice shows that a
// Session keeps floating variables in device memory and integer ones on the host, copies each
// node's inputs to the side its kernel runs on (a device kernel's host inputs stay), writes back
// what a CPU kernel updated in a copy of a variable, and hands fetches back as host tensors: and
// trains to the bit as the CPU does. Also the GPU choice from the node-local rank, and what a
// Session on cuda says where there is no GPU. The CUDA kernels themselves: cuda_test.cc.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "mpiflow/optimizer.h"
#include "mpiflow/random.h"
#include "tests/test_util.h"

namespace mpiflow {
namespace {

TEST(DeviceTest, GpuForLocalRankIsRoundRobinOverTheNodesGpus) {
  EXPECT_EQ(GpuForLocalRank(0, 4), 0);
  EXPECT_EQ(GpuForLocalRank(3, 4), 3);
  EXPECT_EQ(GpuForLocalRank(5, 4), 1);  // more ranks than GPUs: they share
  EXPECT_EQ(GpuForLocalRank(2, 1), 0);
  EXPECT_EQ(GpuForLocalRank(0, 0), -1);  // no GPU
  EXPECT_EQ(GpuForLocalRank(-1, 2), -1);
}

TEST(DeviceTest, UnknownDeviceIsAnError) {
  StatusOr<Device*> d = FindDevice("tpu");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().message(), "unknown device 'tpu' (expected cpu or cuda)");
  EXPECT_EQ(RegisterDevice("cuda", nullptr).code(), Code::kInvalidArgument);
}

TEST(DeviceTest, ASessionOnCudaWithoutAGpuSaysWhatToDo) {
  Scope s = Scope::NewRootScope();
  Output y = ops::Square(s, ops::Const(s, testing::F32({2}, {1, 2})));
  SessionOptions o;
  o.device = kCuda;
  Session session(s.graph(), o);
  std::vector<Tensor> out;
  Status st = session.Run({y}, &out);
  if (GpuCount() > 0) {  // a machine with a GPU: the same graph runs there
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_EQ(out[0].ToVector<float>(), (std::vector<float>{1, 4}));
    return;
  }
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("run with --device cpu"), std::string::npos) << st;
  EXPECT_EQ(SelectGpu(0).code(), Code::kUnavailable);
}

TEST(DeviceTest, LowPrecisionNeedsADevice) {
  Scope s = Scope::NewRootScope();
  Output y = ops::Square(s, ops::Const(s, testing::F32({2}, {1, 2})));
  SessionOptions o;
  o.precision = MathPrecision::kBf16;
  Session session(s.graph(), o);
  std::vector<Tensor> out;
  Status st = session.Run({y}, &out);
  EXPECT_EQ(st.message(),
            "precision bf16 needs a device (GPU) session; the CPU kernels compute "
            "in fp32");
  EXPECT_EQ(ParseMathPrecision("fp8").status().message(),
            "--precision must be fp32, tf32, bf16 or fp16, got 'fp8'");
}

// Host memory that says it is not: data<T>() still works, so the fake kernels and copies can
// compute, while the runtime must treat it as device memory.
class FakeAllocator : public Allocator {
 public:
  void* Allocate(size_t bytes) override {
    live += static_cast<int64_t>(bytes);
    return std::malloc(std::max<size_t>(bytes, 1));
  }
  void Free(void* p, size_t bytes) override {
    live -= static_cast<int64_t>(bytes);
    std::free(p);
  }
  bool host() const override { return false; }
  const char* name() const override { return "fake:0"; }
  std::atomic<int64_t> live{0};
};

class FakeDevice : public Device {
 public:
  explicit FakeDevice(std::string name) : name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  Allocator* allocator() override { return &alloc; }
  StatusOr<Tensor> CopyAcross(const Tensor& t) override {
    Tensor c = t.on_host() ? Tensor(t.dtype(), t.shape(), &alloc) : Tensor(t.dtype(), t.shape());
    (t.on_host() ? to_device : to_host)++;
    if (t.bytes()) std::memcpy(c.raw(), t.raw(), t.bytes());
    return c;
  }
  Status CopyInto(const Tensor& src, const Tensor& dst) override {
    ++copies_into;
    if (src.bytes()) std::memcpy(dst.raw(), src.raw(), src.bytes());
    return Status::OK();
  }
  Status Synchronize() override { return Status::OK(); }

  FakeAllocator alloc;
  std::atomic<int> to_device{0}, to_host{0}, copies_into{0};

 private:
  std::string name_;
};

std::atomic<int> g_fake_kernels{0};  // fake kernels run

Status ExpectSide(KernelContext* ctx, int i, bool host) {
  if (ctx->input(i).on_host() == host) return Status::OK();
  return ctx->Error("input ", i, host ? " is not in host memory" : " is in host memory");
}

class FakeSquare : public OpKernel {
 public:
  explicit FakeSquare(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    MPIFLOW_RETURN_IF_ERROR(ExpectSide(ctx, 0, false));
    const Tensor& x = ctx->input(0);
    Tensor* y = ctx->allocate_output(0, x.shape());
    for (int64_t i = 0; i < x.num_elements(); ++i)
      y->data<float>()[i] = x.data<float>()[i] * x.data<float>()[i];
    ++g_fake_kernels;
    return Status::OK();
  }
};

class FakeAssign : public OpKernel {
 public:
  explicit FakeAssign(const KernelInitContext& c) : OpKernel(c.node) {
    const Node* var = c.node.input(0).node;
    slot_ = c.variables->GetOrCreate(var->name(), var->output_dtype(0), var->output_shape(0));
  }
  Status Compute(KernelContext* ctx) override {
    MPIFLOW_RETURN_IF_ERROR(ExpectSide(ctx, 1, false));
    const Tensor& v = ctx->input(1);
    if (!slot_->value.allocated()) slot_->value = Tensor(v.dtype(), v.shape(), ctx->allocator());
    std::memcpy(slot_->value.raw(), v.raw(), v.bytes());
    ctx->set_output(0, slot_->value);
    ++g_fake_kernels;
    return Status::OK();
  }

 private:
  VariableResource::Slot* slot_;
};

class FakeApplyGradientDescent : public OpKernel {
 public:
  explicit FakeApplyGradientDescent(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    MPIFLOW_RETURN_IF_ERROR(ExpectSide(ctx, 0, false));
    MPIFLOW_RETURN_IF_ERROR(ExpectSide(ctx, 1, true));  // the learning rate: a host input
    MPIFLOW_RETURN_IF_ERROR(ExpectSide(ctx, 2, false));
    float* w = ctx->input(0).data<float>();
    const float lr = *ctx->input(1).data<float>();
    const float* g = ctx->input(2).data<float>();
    for (int64_t i = 0; i < ctx->input(0).num_elements(); ++i) w[i] -= lr * g[i];
    ctx->set_output(0, ctx->input(0));
    ++g_fake_kernels;
    return Status::OK();
  }
};

// "fake": Square, Assign and ApplyGradientDescent on the device; "fake-cpu-updates": the same
// without ApplyGradientDescent, so the updates run on the CPU on copies written back.
FakeDevice* Install(const std::string& name, bool device_updates) {
  static std::map<std::string, FakeDevice*> made;
  if (made.count(name)) return made[name];
  auto* d = new FakeDevice(name);
  EXPECT_TRUE(RegisterDevice(name, d).ok());
  KernelRegistry& r = KernelRegistry::Global();
  RegisterKernel<FakeSquare>(r, "Square", name, DType::kFloat32);
  RegisterKernel<FakeAssign>(r, "Assign", name, DType::kFloat32);
  if (device_updates) {
    RegisterKernel<FakeApplyGradientDescent>(r, "ApplyGradientDescent", name, DType::kFloat32, {1});
  }
  return made[name] = d;
}

struct Trained {
  std::vector<Tensor> vars;  // w, then the momentum optimizer's slot where there is one
  float loss = 0;
  int64_t step = 0;
};

// loss = mean(square(x w)) over a fixed batch; `steps` updates from a seeded start.
Trained Train(const std::string& device, OptimizerKind kind, int steps) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s, DType::kFloat32, Shape{4, 3});
  Output w = ops::Variable(s.WithOpName("w"),
                           ops::RandomUniform(s, Shape{3, 2}, -1, 1, 7, DType::kFloat32));
  Output loss = ops::Mean(s, ops::Square(s, ops::MatMul(s, x, w)), {});
  OptimizerOptions o;
  o.kind = kind;
  o.lr.base = 0.1;
  StatusOr<TrainOp> t = Minimize(s, loss, o);
  EXPECT_TRUE(t.ok()) << t.status();
  SessionOptions so;
  so.device = device;
  Session session(s.graph(), so);
  EXPECT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  Tensor batch(DType::kFloat32, Shape{4, 3});
  for (int i = 0; i < 12; ++i) batch.data<float>()[i] = static_cast<float>(i % 5) * 0.3f - 0.5f;
  Trained r;
  for (int i = 0; i < steps; ++i) {
    std::vector<Tensor> out;
    Status st = session.Run({{x, batch}}, {loss}, {t->train}, &out);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) return r;
    EXPECT_TRUE(out[0].on_host());
    r.loss = *out[0].data<float>();
  }
  for (const char* name : {"w", "w/momentum"}) {
    if (!s.graph()->FindNode(name)) continue;
    StatusOr<Tensor> v = session.ReadVariable(name);
    EXPECT_TRUE(v.ok()) << v.status();
    if (v.ok()) {
      EXPECT_TRUE(v->on_host());
      r.vars.push_back(*v);
    }
  }
  std::vector<Tensor> step;
  EXPECT_TRUE(session.Run({t->global_step}, &step).ok());
  r.step = *step[0].data<int64_t>();
  return r;
}

void ExpectSameBits(const Trained& a, const Trained& b) {
  ASSERT_EQ(a.vars.size(), b.vars.size());
  for (size_t i = 0; i < a.vars.size(); ++i) {
    EXPECT_TRUE(a.vars[i].BitEqual(b.vars[i]))
        << a.vars[i].DebugString() << " vs " << b.vars[i].DebugString();
  }
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.step, b.step);
}

TEST(DeviceTest, ASessionOnADeviceTrainsAsTheCpuToTheBit) {
  FakeDevice* fake = Install("fake", true);
  const int before = g_fake_kernels.load();
  const Trained cpu = Train(kCpu, OptimizerKind::kSgd, 3);
  EXPECT_EQ(g_fake_kernels.load(), before);  // no fake kernel runs on the CPU
  const Trained dev = Train("fake", OptimizerKind::kSgd, 3);
  ExpectSameBits(cpu, dev);
  EXPECT_EQ(cpu.step, 3);
  // Assign once, then Square and the update every step.
  EXPECT_EQ(g_fake_kernels.load() - before, 1 + 3 * 2);
  // Each step copies the batch to the device for Square's input (MatMul stays on the CPU, so
  // its output goes across), w to the host for MatMul, and the gradient to the device.
  EXPECT_GT(fake->to_device.load(), 0);
  EXPECT_GT(fake->to_host.load(), 0);
  EXPECT_EQ(fake->copies_into.load(), 0);  // the device updates w in place: nothing to write back
  EXPECT_EQ(fake->alloc.live.load(), 0);   // the session is gone: w's device memory with it
}

TEST(DeviceTest, ACpuUpdateOfADeviceVariableIsWrittenBack) {
  FakeDevice* fake = Install("fake-cpu-updates", false);
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum}) {
    const int into = fake->copies_into.load();
    const Trained cpu = Train(kCpu, kind, 3);
    const Trained dev = Train("fake-cpu-updates", kind, 3);
    ExpectSameBits(cpu, dev);
    // Three steps of the CPU update: w (and momentum's slot) written back each time.
    EXPECT_EQ(fake->copies_into.load() - into, 3 * (kind == OptimizerKind::kMomentum ? 2 : 1))
        << OptimizerName(kind);
  }
}

TEST(DeviceTest, VariablesWrittenFromOutsideGoToTheDevice) {
  FakeDevice* fake = Install("fake", true);
  Scope s = Scope::NewRootScope();
  Output w = ops::Variable(s.WithOpName("w"), ops::Const(s, testing::F32({2}, {0, 0})));
  Output step = ops::Variable(s.WithOpName("n"), ops::Const(s, Tensor::Scalar<int64_t>(0)));
  Output y = ops::Square(s, w);
  SessionOptions so;
  so.device = "fake";
  Session session(s.graph(), so);
  const int64_t live = fake->alloc.live.load();
  ASSERT_TRUE(session.WriteVariable("w", testing::F32({2}, {3, -2})).ok());
  ASSERT_TRUE(session.WriteVariable("n", Tensor::Scalar<int64_t>(5)).ok());
  EXPECT_EQ(fake->alloc.live.load() - live, 8);  // w's two floats; the integer stays on the host
  std::vector<Tensor> out;
  ASSERT_TRUE(session.Run({y, step}, &out).ok());
  EXPECT_EQ(out[0].ToVector<float>(), (std::vector<float>{9, 4}));
  EXPECT_EQ(*out[1].data<int64_t>(), 5);
  Status rows = session.KeepRows("w", 0, 1);
  EXPECT_EQ(rows.code(), Code::kUnimplemented);
  EXPECT_EQ(rows.message(),
            "KeepRows of variable 'w', which is in fake:0 memory: parameter-server strategies run "
            "with --device cpu for now");
}

}  // namespace
}  // namespace mpiflow
