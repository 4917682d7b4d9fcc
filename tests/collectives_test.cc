// Collectives under mpiexec (CTest runs this binary with 1, 2 and 4 ranks): every collective,
// every dtype, sizes 0, 1, odd and several MiB, every allreduce algorithm, checked against closed
// forms (rank r contributes a known value), and bit-identical on all ranks. Checks use EXPECT so
// that every rank issues the same collectives even when one of them fails a check.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "mpiflow/communicator.h"
#include "mpiflow/random.h"
#include "tests/mpi_test_main.h"

namespace mpiflow {
namespace {

Communicator*& comm = test::world;

constexpr int64_t kModulus = 97;  // keeps every float16 sum an exact integer

// Rank r's element i.
double Input(int r, int64_t i) { return static_cast<double>(r + i % kModulus); }

template <typename T>
T Cast(double v) {
  return static_cast<T>(v);
}
template <>
Half Cast<Half>(double v) {
  return FloatToHalf(static_cast<float>(v));
}
template <typename T>
double Back(T v) {
  return static_cast<double>(v);
}
template <>
double Back<Half>(Half v) {
  return HalfToFloat(v);
}

template <typename T>
Tensor Filled(int r, int64_t n) {
  Tensor t(DTypeOf<T>::value, Shape{n});
  for (int64_t i = 0; i < n; ++i) t.data<T>()[i] = Cast<T>(Input(r, i));
  return t;
}

double Expected(ReduceOp op, int64_t i, int p, bool integer) {
  const double base = static_cast<double>(i % kModulus);
  switch (op) {
    case ReduceOp::kSum:
      return p * base + p * (p - 1) / 2.0;
    case ReduceOp::kAverage: {
      const double sum = p * base + p * (p - 1) / 2.0;
      return integer ? std::floor(sum / p) : sum / p;
    }
    case ReduceOp::kMax:
      return base + p - 1;
    case ReduceOp::kMin:
      return base;
  }
  return 0;
}

// Every rank holds the same bytes as rank 0.
bool SameOnAllRanks(const Tensor& t) {
  const int64_t bytes = static_cast<int64_t>(t.bytes());
  Tensor mine(DType::kInt32, Shape{(bytes + 3) / 4});
  mine.FillZero();
  if (bytes > 0) std::memcpy(mine.raw(), t.raw(), bytes);
  Tensor all(DType::kInt32, Shape{mine.num_elements() * comm->size()});
  EXPECT_TRUE(comm->Allgather(mine, all)->Wait().ok());
  for (int r = 1; r < comm->size(); ++r) {
    if (std::memcmp(all.data<int32_t>(), all.data<int32_t>() + r * mine.num_elements(),
                    mine.bytes()) != 0) {
      return false;
    }
  }
  return true;
}

const std::vector<int64_t> kSizes = {0, 1, 7, 1001, (5 << 20) / 8 + 3};  // the last: ~2.5-5 MiB

template <typename T>
void CheckAllreduce(AllreduceAlgorithm alg) {
  const int p = comm->size(), r = comm->rank();
  const bool integer = std::is_integral<T>::value;
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage, ReduceOp::kMax, ReduceOp::kMin}) {
    for (int64_t n : kSizes) {
      Tensor t = Filled<T>(r, n);
      AllreduceOptions o;
      o.op = op;
      o.algorithm = alg;
      Status s = comm->Allreduce(t, o)->Wait();
      ASSERT_TRUE(s.ok()) << s.ToString();
      int64_t bad = 0, first = -1;
      for (int64_t i = 0; i < n; ++i) {
        if (Back(t.data<T>()[i]) != Expected(op, i, p, integer)) {
          if (first < 0) first = i;
          ++bad;
        }
      }
      EXPECT_EQ(bad, 0) << DTypeName(t.dtype()) << " " << ReduceOpName(op) << " n=" << n
                        << " first wrong element " << first << ": got "
                        << (first >= 0 ? Back(t.data<T>()[first]) : 0) << ", expected "
                        << (first >= 0 ? Expected(op, first, p, integer) : 0);
      EXPECT_TRUE(SameOnAllRanks(t)) << ReduceOpName(op) << " n=" << n;
    }
  }
}

class AllreduceTest : public ::testing::TestWithParam<AllreduceAlgorithm> {};

TEST_P(AllreduceTest, Float32ClosedForm) { CheckAllreduce<float>(GetParam()); }
TEST_P(AllreduceTest, Float64ClosedForm) { CheckAllreduce<double>(GetParam()); }
TEST_P(AllreduceTest, Int32ClosedForm) { CheckAllreduce<int32_t>(GetParam()); }
TEST_P(AllreduceTest, Int64ClosedForm) { CheckAllreduce<int64_t>(GetParam()); }
TEST_P(AllreduceTest, Float16SummedInFloat32) { CheckAllreduce<Half>(GetParam()); }

// Values whose sums round: every rank regenerates all inputs, so it knows the float64 sum; the
// float32 result is within rounding of it and bit-identical everywhere.
TEST_P(AllreduceTest, RoundedSumsAgreeOnEveryRank) {
  const int p = comm->size(), r = comm->rank();
  const int64_t n = (3 << 20) / 4 + 5;
  auto value = [](int rank, int64_t i) {
    return static_cast<float>(RandomUniform01(1234, rank, i) - 0.5);
  };
  Tensor t(DType::kFloat32, Shape{n});
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = value(r, i);
  AllreduceOptions o;
  o.algorithm = GetParam();
  ASSERT_TRUE(comm->Allreduce(t, o)->Wait().ok());
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    double ref = 0;
    for (int q = 0; q < p; ++q) ref += value(q, i);
    worst = std::max(worst, std::fabs(t.data<float>()[i] - ref));
  }
  EXPECT_LE(worst, 1e-6 * p);
  EXPECT_TRUE(SameOnAllRanks(t));
  // A rerun gives the same bits.
  Tensor again(DType::kFloat32, Shape{n});
  for (int64_t i = 0; i < n; ++i) again.data<float>()[i] = value(r, i);
  ASSERT_TRUE(comm->Allreduce(again, o)->Wait().ok());
  EXPECT_TRUE(again.BitEqual(t));
}

INSTANTIATE_TEST_SUITE_P(
    Algorithms, AllreduceTest,
    ::testing::Values(AllreduceAlgorithm::kNative, AllreduceAlgorithm::kRing,
                      AllreduceAlgorithm::kHalvingDoubling, AllreduceAlgorithm::kRecursiveDoubling,
                      AllreduceAlgorithm::kHierarchical, AllreduceAlgorithm::kAuto),
    [](const auto& info) { return std::string(AllreduceAlgorithmName(info.param)); });

// --allreduce-compression: 16-bit values on the wire, float32 sums. Small integers (every partial
// sum exact in 16 bits) come out exact; random values within the format's rounding of the float64
// sum; every rank holds the same bits; a rerun gives them again.
TEST(Collectives, CompressedAllreduceOnTheWire) {
  const int p = comm->size(), r = comm->rank();
  for (AllreduceCompression wire : {AllreduceCompression::kFp16, AllreduceCompression::kBf16}) {
    const double unit = wire == AllreduceCompression::kBf16 ? 1.0 / 256 : 1.0 / 2048;
    for (AllreduceAlgorithm alg : {AllreduceAlgorithm::kAuto, AllreduceAlgorithm::kRing,
                                   AllreduceAlgorithm::kHierarchical}) {
      const std::string what =
          StrCat(AllreduceCompressionName(wire), " ", AllreduceAlgorithmName(alg));
      AllreduceOptions o;
      o.algorithm = alg;
      o.compression = wire;
      for (int64_t n : kSizes) {
        Tensor t(DType::kFloat32, Shape{n});
        for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = static_cast<float>((r + i) % 8);
        ASSERT_TRUE(comm->Allreduce(t, o)->Wait().ok()) << what;
        int64_t bad = 0;
        for (int64_t i = 0; i < n; ++i) {
          double want = 0;
          for (int q = 0; q < p; ++q) want += static_cast<double>((q + i) % 8);
          bad += t.data<float>()[i] != want;
        }
        EXPECT_EQ(bad, 0) << what << " n=" << n;
      }
      const int64_t n = (1 << 20) / 4 + 5;
      auto value = [](int rank, int64_t i) {
        return static_cast<float>(RandomUniform01(99, rank, i) - 0.5);
      };
      Tensor t(DType::kFloat32, Shape{n}), exact(DType::kFloat32, Shape{n});
      for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = exact.data<float>()[i] = value(r, i);
      Tensor again = t.DeepCopy();
      ASSERT_TRUE(comm->Allreduce(t, o)->Wait().ok()) << what;
      AllreduceOptions plain;
      plain.algorithm = AllreduceAlgorithm::kRing;
      ASSERT_TRUE(comm->Allreduce(exact, plain)->Wait().ok());
      double worst = 0;
      int64_t differ = 0;
      for (int64_t i = 0; i < n; ++i) {
        double ref = 0;
        for (int q = 0; q < p; ++q) ref += value(q, i);
        worst = std::max(worst, std::fabs(t.data<float>()[i] - ref));
        differ += t.data<float>()[i] != exact.data<float>()[i];
      }
      // p - 1 rounded partial sums (each at most p/2 in size) and the rounded result.
      EXPECT_LE(worst, p * (p / 2.0) * unit) << what;
      if (p > 1) {
        EXPECT_GT(differ, n / 4) << what << ": the values did not travel rounded";
      }
      EXPECT_TRUE(SameOnAllRanks(t)) << what;
      ASSERT_TRUE(comm->Allreduce(again, o)->Wait().ok());
      EXPECT_TRUE(again.BitEqual(t)) << what;
    }
  }
  if (p == 1) return;  // one rank: nothing goes on the wire, nothing to refuse
  AllreduceOptions rd;
  rd.algorithm = AllreduceAlgorithm::kRecursiveDoubling;
  rd.compression = AllreduceCompression::kBf16;
  Tensor t = Filled<float>(r, 10);
  EXPECT_EQ(comm->Allreduce(t, rd)->Wait().message(),
            "allreduce compression bf16 runs in the ring's chunks: use the ring or hier algorithm, "
            "not rd");
  AllreduceOptions f64;
  f64.compression = AllreduceCompression::kFp16;
  Tensor d = Filled<double>(r, 10);
  EXPECT_EQ(comm->Allreduce(d, f64)->Wait().message(),
            "allreduce compression fp16 needs float32 (or float16) data, not float64");
  EXPECT_EQ(ParseAllreduceCompression("int8").status().message(),
            "unknown allreduce compression 'int8': use none, fp16 or bf16");
}

TEST(Collectives, ReduceScatterEveryOp) {
  const int p = comm->size(), r = comm->rank();
  for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{5}, int64_t{300001}}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage, ReduceOp::kMax, ReduceOp::kMin}) {
      Tensor in = Filled<float>(r, k * p), out(DType::kFloat32, Shape{k});
      ASSERT_TRUE(comm->ReduceScatter(in, out, op)->Wait().ok());
      int64_t bad = 0;
      for (int64_t i = 0; i < k; ++i) {
        bad += out.data<float>()[i] != Expected(op, r * k + i, p, false);
      }
      EXPECT_EQ(bad, 0) << ReduceOpName(op) << " k=" << k;
    }
  }
  Tensor in = Filled<Half>(r, 6 * p), out(DType::kFloat16, Shape{6});
  ASSERT_TRUE(comm->ReduceScatter(in, out, ReduceOp::kSum)->Wait().ok());
  for (int64_t i = 0; i < 6; ++i) {
    EXPECT_EQ(HalfToFloat(out.data<Half>()[i]), Expected(ReduceOp::kSum, r * 6 + i, p, false));
  }
}

TEST(Collectives, AllgatherEveryDType) {
  const int p = comm->size(), r = comm->rank();
  for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{400000}}) {
    Tensor in = Filled<int64_t>(r, k), out(DType::kInt64, Shape{k * p});
    ASSERT_TRUE(comm->Allgather(in, out)->Wait().ok());
    int64_t bad = 0;
    for (int q = 0; q < p; ++q) {
      for (int64_t i = 0; i < k; ++i) bad += out.data<int64_t>()[q * k + i] != Input(q, i);
    }
    EXPECT_EQ(bad, 0) << "k=" << k;
  }
  Tensor in = Filled<double>(r, 2), out(DType::kFloat64, Shape{2 * p});
  ASSERT_TRUE(comm->Allgather(in, out)->Wait().ok());
  for (int q = 0; q < p; ++q) EXPECT_EQ(out.data<double>()[2 * q + 1], Input(q, 1));
}

TEST(Collectives, BroadcastFromEveryRoot) {
  const int p = comm->size(), r = comm->rank();
  for (int root = 0; root < p; ++root) {
    Tensor t = Filled<float>(r, 1 << 18);
    ASSERT_TRUE(comm->Broadcast(t, root)->Wait().ok());
    int64_t bad = 0;
    for (int64_t i = 0; i < t.num_elements(); ++i) bad += t.data<float>()[i] != Input(root, i);
    EXPECT_EQ(bad, 0) << "root " << root;
  }
  EXPECT_NE(comm->Broadcast(Filled<float>(r, 1), p)->Wait().ToString().find("root"),
            std::string::npos);
}

TEST(Collectives, SendRecvAroundTheRing) {
  const int p = comm->size(), r = comm->rank();
  Tensor out = Filled<int32_t>(r, 1000), in(DType::kInt32, Shape{1000});
  // Post the receive first and the send second: neither may block the other.
  auto recv = comm->Recv(in, (r + p - 1) % p, 7);
  auto send = comm->Send(out, (r + 1) % p, 7);
  ASSERT_TRUE(recv->Wait().ok());
  ASSERT_TRUE(send->Wait().ok());
  EXPECT_EQ(in.data<int32_t>()[999], Input((r + p - 1) % p, 999));
  // A message of another size is an error naming the peer and the sizes.
  Tensor small(DType::kInt32, Shape{10}), big(DType::kInt32, Shape{20});
  auto r2 = comm->Recv(big, (r + p - 1) % p, 8);
  auto s2 = comm->Send(small, (r + 1) % p, 8);
  ASSERT_TRUE(s2->Wait().ok());
  const Status st = r2->Wait();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find(StrCat("Recv from rank ", (r + p - 1) % p,
                                      " tag 8 received 40 "
                                      "bytes, expected 80")),
            std::string::npos)
      << st.ToString();
}

TEST(Collectives, BarrierCompletes) { EXPECT_TRUE(comm->Barrier()->Wait().ok()); }

TEST(Collectives, SplitIntoEvenAndOddRanks) {
  const int p = comm->size(), r = comm->rank();
  StatusOr<std::unique_ptr<Communicator>> sub = comm->Split(r % 2, r);
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  const int members = (p + 1 - r % 2) / 2;
  EXPECT_EQ((*sub)->size(), members);
  EXPECT_EQ((*sub)->rank(), r / 2);
  Tensor t = Tensor::FromVector<int32_t>(Shape{1}, {r});
  ASSERT_TRUE((*sub)->Allreduce(t, {})->Wait().ok());
  int expect = 0;
  for (int q = r % 2; q < p; q += 2) expect += q;
  EXPECT_EQ(t.data<int32_t>()[0], expect);
}

// A communicator of one rank (each rank alone: a parameter server's group of one) has nothing
// to combine: its allreduce is done when the call returns, the values as they were, and a bad
// dtype is still an error.
TEST(Collectives, AllreduceOfOneRankIsDoneAtOnce) {
  StatusOr<std::unique_ptr<Communicator>> alone = comm->Split(comm->rank(), 0);
  ASSERT_TRUE(alone.ok()) << alone.status().ToString();
  ASSERT_EQ((*alone)->size(), 1);
  Tensor t = Tensor::FromVector<float>(Shape{3}, {1.5f, -2, 3});
  AllreduceOptions max;
  max.op = ReduceOp::kMax;
  std::shared_ptr<Work> w = (*alone)->Allreduce(t, max);
  EXPECT_TRUE(w->Completed());
  ASSERT_TRUE(w->Wait().ok());
  EXPECT_EQ(t.data<float>()[0], 1.5f);
  EXPECT_EQ(t.data<float>()[1], -2.0f);
  EXPECT_EQ(t.data<float>()[2], 3.0f);
  EXPECT_EQ((*alone)->Allreduce(Tensor(DType::kBool, Shape{2}), {})->Wait().message(),
            "Allreduce supports float32, float64, float16, int32 and int64, not bool");
}

TEST(Collectives, UnsupportedDTypeAndShapeErrors) {
  Tensor b(DType::kBool, Shape{3});
  EXPECT_EQ(comm->Allreduce(b, {})->Wait().ToString().find("not bool") != std::string::npos, true);
  Tensor in(DType::kFloat32, Shape{3}), out(DType::kFloat32, Shape{3});
  const Status s = comm->ReduceScatter(in, out, ReduceOp::kSum)->Wait();
  if (comm->size() > 1) {
    EXPECT_NE(s.ToString().find("the input must hold size()"), std::string::npos) << s.ToString();
  } else {
    EXPECT_TRUE(s.ok());
  }
}

TEST(Collectives, RuleListsParseAndChoose) {
  StatusOr<std::vector<AllreduceRule>> rules = ParseAllreduceRules("native:<=65536,hd@>=4,ring");
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(AllreduceRulesToString(*rules), "native:<=65536,hd@>=4,ring");
  EXPECT_EQ(ChooseAllreduce(*rules, 1024, 2), AllreduceAlgorithm::kNative);
  EXPECT_EQ(ChooseAllreduce(*rules, 1 << 20, 2), AllreduceAlgorithm::kRing);
  EXPECT_EQ(ChooseAllreduce(*rules, 1 << 20, 4), AllreduceAlgorithm::kHalvingDoubling);
  EXPECT_NE(ParseAllreduceRules("tree").status().ToString().find("rule 'tree'"), std::string::npos);
  EXPECT_NE(ParseAllreduceRules("ring:<5").status().ToString().find("cannot read ':<5'"),
            std::string::npos);
}

}  // namespace
}  // namespace mpiflow
