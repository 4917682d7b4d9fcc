// Core types: Shape, Tensor, float16 conversion, allocator reuse, attr text encoding.
#include "mpiflow/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "mpiflow/graph.h"

namespace mpiflow {
namespace {

TEST(ShapeTest, ElementsCompatibilityAndText) {
  EXPECT_EQ(Shape({2, 3, 4}).num_elements(), 24);
  EXPECT_EQ(Shape({}).num_elements(), 1);
  EXPECT_EQ(Shape({-1, 784}).ToString(), "[?,784]");
  EXPECT_TRUE(Shape({-1, 784}).IsCompatibleWith(Shape({64, 784})));
  EXPECT_FALSE(Shape({-1, 784}).IsCompatibleWith(Shape({64, 785})));
  EXPECT_FALSE(Shape({64}).IsCompatibleWith(Shape({64, 1})));
  EXPECT_FALSE(Shape({-1, 2}).IsFullyDefined());
}

TEST(TensorTest, BuffersAre64ByteAlignedAndShared) {
  Tensor t(DType::kFloat32, Shape{3, 5});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  EXPECT_EQ(t.bytes(), 60u);
  Tensor r = t.Reshaped(Shape{15});
  EXPECT_EQ(r.raw(), t.raw());
  EXPECT_EQ(r.num_elements(), 15);
  Tensor c = t.DeepCopy();
  EXPECT_NE(c.raw(), t.raw());
  EXPECT_TRUE(c.BitEqual(t));
}

TEST(TensorTest, AllocatorReusesFreedBuffersOfTheSameSize) {
  void* first;
  {
    Tensor t(DType::kFloat64, Shape{1000, 7});
    first = t.raw();
  }
  const int64_t before = CpuAllocatorStats().allocations;
  Tensor again(DType::kFloat64, Shape{7, 1000});
  EXPECT_EQ(again.raw(), first);
  EXPECT_EQ(CpuAllocatorStats().allocations, before);
}

// Sizes that change every step (a sparse gradient's rows) land in size classes, four per
// doubling above 4 KiB: 9,600 and 10,000 bytes share the 10,240-byte class, 20,000 does not.
TEST(TensorTest, AllocatorReusesABufferOfTheSameSizeClass) {
  void* first;
  {
    Tensor t(DType::kFloat32, Shape{2500});  // 10,000 bytes
    first = t.raw();
  }
  const int64_t before = CpuAllocatorStats().allocations;
  {
    Tensor smaller(DType::kFloat32, Shape{40, 60});  // 9,600 bytes
    EXPECT_EQ(smaller.raw(), first);
    EXPECT_EQ(CpuAllocatorStats().allocations, before);
  }
  Tensor larger(DType::kFloat32, Shape{5000});  // 20,000 bytes: the 20,480 class
  EXPECT_NE(larger.raw(), first);
}

TEST(Bf16Test, RoundsToNearestEvenAndKeepsSpecials) {
  for (float f : {0.0f, -0.0f, 1.0f, -2.5f, 3.140625f, 1e30f, -1e-30f}) {
    EXPECT_EQ(Bf16ToFloat(FloatToBf16(Bf16ToFloat(FloatToBf16(f)))), Bf16ToFloat(FloatToBf16(f)));
  }
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xc000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to the even one, 1.
  EXPECT_EQ(FloatToBf16(1.00390625f), 0x3f80);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to the even one.
  EXPECT_EQ(FloatToBf16(1.01171875f), 0x3f82);
  EXPECT_EQ(FloatToBf16(1.0f + 1.0f / 128 + 1.0f / 512), 0x3f81);  // below halfway: down
  EXPECT_EQ(FloatToBf16(3.4e38f), 0x7f80);                         // above bf16's largest: infinity
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(FloatToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  // A NaN whose payload sits in the dropped bits stays a NaN (not infinity).
  uint32_t bits = 0x7f800001u;
  float low_nan;
  std::memcpy(&low_nan, &bits, 4);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(low_nan))));
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1e-40f)), Bf16ToFloat(0x0001));  // subnormals round too
}

TEST(HalfTest, RoundTripsAndRoundsToNearestEven) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 0.000061035156f, 3.140625f}) {
    EXPECT_EQ(HalfToFloat(FloatToHalf(f)), f) << f;
  }
  EXPECT_EQ(FloatToHalf(1.0f).bits, 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f).bits, 0xc000);
  EXPECT_EQ(FloatToHalf(1e6f).bits, 0x7c00);             // overflow -> inf
  EXPECT_EQ(HalfToFloat(Half{0x0001}), 5.9604645e-08f);  // smallest subnormal
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties to even gives 1.
  EXPECT_EQ(FloatToHalf(1.0f + 0.00048828125f).bits, 0x3c00);
}

TEST(AttrTest, EncodeDecodeRoundTripsEveryKind) {
  const std::vector<AttrValue> values = {
      AttrValue(int64_t{-7}),
      AttrValue(0.1),
      AttrValue(true),
      AttrValue(std::string("a b=c")),
      AttrValue(DType::kInt64),
      AttrValue(Shape{-1, 28, 28, 1}),
      AttrValue(std::vector<int64_t>{1, -1, 3}),
      AttrValue(Tensor::FromVector<float>(Shape{2}, {1.5f, -2.0f}))};
  for (const AttrValue& v : values) {
    const std::string text = EncodeAttr(v);
    StatusOr<AttrValue> back = DecodeAttr(text);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(EncodeAttr(*back), text);
  }
  EXPECT_EQ(std::get<double>(*DecodeAttr(EncodeAttr(AttrValue(0.1)))), 0.1);  // exact
  EXPECT_FALSE(DecodeAttr("q:1").ok());
  EXPECT_EQ(DecodeAttr("t:float128").status().message(),
            "unknown dtype 'float128' (expected float32, float64, int32, int64, float16 or bool)");
}

TEST(StatusTest, CarriesCodeMessageAndContext) {
  Status s = InvalidArgument("batch ", 5, " is odd");
  EXPECT_EQ(s.ToString(), "INVALID_ARGUMENT: batch 5 is odd");
  EXPECT_EQ(s.WithContext("file.ini").message(), "file.ini: batch 5 is odd");
  StatusOr<int> v = 3;
  EXPECT_EQ(*v, 3);
  StatusOr<int> e = NotFound("x");
  EXPECT_EQ(e.status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace mpiflow

namespace mpiflow {
namespace {

TEST(TensorView, SharesTheBufferFromAnOffset) {
  Tensor t = Tensor::FromVector<float>(Shape{6}, {0, 1, 2, 3, 4, 5});
  Tensor v = t.View(2, Shape{2, 2});
  EXPECT_EQ(v.shape(), (Shape{2, 2}));
  EXPECT_EQ(v.ToVector<float>(), (std::vector<float>{2, 3, 4, 5}));
  t.data<float>()[3] = 30;  // the same memory
  EXPECT_EQ(v.data<float>()[1], 30);
  Tensor w = v.View(1, Shape{2});  // a view of a view
  EXPECT_EQ(w.ToVector<float>(), (std::vector<float>{30, 4}));
  EXPECT_EQ(v.Reshaped(Shape{4}).ToVector<float>(), (std::vector<float>{2, 30, 4, 5}));
  Tensor copy = v.DeepCopy();
  t.data<float>()[2] = -1;
  EXPECT_EQ(copy.data<float>()[0], 2);
  EXPECT_TRUE(copy.BitEqual(Tensor::FromVector<float>(Shape{2, 2}, {2, 30, 4, 5})));
}

}  // namespace
}  // namespace mpiflow
