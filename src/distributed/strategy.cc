// Strategy names, the choice of a strategy for a run, and the interface's defaults.
#include "mpiflow/strategy.h"

#include "mpiflow/enum_names.h"
#include "parameter_server.h"
#include "pipeline_strategy.h"
#include "ps_strategy.h"
#include "replicated_strategy.h"

namespace mpiflow {

namespace {
constexpr EnumName<StrategyKind> kStrategies[] = {{StrategyKind::kAuto, "auto"},
                                                  {StrategyKind::kAllReduce, "allreduce"},
                                                  {StrategyKind::kParameterServer, "ps"},
                                                  {StrategyKind::kPipeline, "pipeline"},
                                                  {StrategyKind::kNone, "none"}};
constexpr EnumName<PsMode> kPsModes[] = {
    {PsMode::kSync, "sync"}, {PsMode::kAsync, "async"}, {PsMode::kHybrid, "hybrid"}};
}  // namespace

StatusOr<PsMode> ParsePsMode(const std::string& name) {
  return ParseEnum(kPsModes, "--ps-mode", name);
}

const char* PsModeName(PsMode mode) { return EnumToName(kPsModes, mode); }

StatusOr<StrategyKind> ParseStrategy(const std::string& name) {
  return ParseEnum(kStrategies, "--strategy", name);
}

const char* StrategyName(StrategyKind kind) { return EnumToName(kStrategies, kind); }

Status CheckParameterServerRanks(int ranks, const ParameterServerOptions& o) {
  return MakePsLayout(ranks, o, {}).status();
}

StatusOr<RunState> Strategy::ResumeState(CheckpointManager& checkpoints) {
  if (checkpoints.options().resume.empty()) return RunState{};
  return checkpoints.PeekResumeState();
}

StatusOr<ServeOutcome> Strategy::Serve(Session&, CheckpointManager&, const DataPlan&, int64_t) {
  return Internal("this strategy has no serving ranks");
}

StatusOr<std::unique_ptr<Strategy>> MakeStrategy(StrategyKind kind, const StrategyEnv& env,
                                                 const AllReduceOptions& allreduce,
                                                 const ParameterServerOptions& ps,
                                                 const PipelineOptions& pipeline) {
  const int ranks = env.comm ? env.comm->size() : 1;
  if (pipeline.stages < 1 || pipeline.microbatches < 1) {
    return InvalidArgument("--pipeline-stages and --microbatches must be >= 1, got ",
                           pipeline.stages, " and ", pipeline.microbatches);
  }
  if (kind == StrategyKind::kAuto && pipeline.stages > 1) kind = StrategyKind::kPipeline;
  if (kind != StrategyKind::kPipeline && (pipeline.stages > 1 || pipeline.microbatches > 1)) {
    return InvalidArgument(
        "--pipeline-stages and --microbatches need --strategy pipeline (or "
        "auto), not ",
        StrategyName(kind));
  }
  if (kind == StrategyKind::kPipeline) {
    if (ranks % pipeline.stages != 0) {
      return InvalidArgument("--pipeline-stages ", pipeline.stages, " needs a multiple of ",
                             pipeline.stages,
                             " ranks (replicas x stages, one rank per stage of each replica); "
                             "the job has ",
                             ranks, " rank(s): run mpirun -np ", pipeline.stages, " (or ",
                             2 * pipeline.stages, " for 2 replicas)");
    }
    return std::unique_ptr<Strategy>(new PipelineStrategy(env, pipeline));
  }
  if (kind == StrategyKind::kNone && ranks > 1) {
    return InvalidArgument("--strategy none under ", ranks, " ranks would train ", ranks,
                           " separate copies of the model: use --strategy allreduce, or run one "
                           "rank");
  }
  if (kind == StrategyKind::kParameterServer) {
    MPIFLOW_RETURN_IF_ERROR(CheckParameterServerRanks(ranks, ps));
    return std::unique_ptr<Strategy>(new ParameterServerStrategy(env, ps));
  }
  if (ranks == 1) return std::unique_ptr<Strategy>(new LocalStrategy(env));
  return std::unique_ptr<Strategy>(new AllReduceStrategy(env, allreduce));
}

}  // namespace mpiflow
