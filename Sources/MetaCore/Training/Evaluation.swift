/// Post-adaptation performance over a fixed, seeded set of held-out tasks.
public struct Evaluation: Sendable, Codable {
    /// Mean and 95% confidence half-width of a quantity over tasks.
    public struct Estimate: Sendable, Codable {
        public let mean: Double, confidence95: Double
        init(_ samples: [Double]) {
            let n = Double(samples.count), mean = samples.reduce(0, +) / n
            let variance = samples.count > 1 ? samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1) : 0
            self.mean = mean
            self.confidence95 = 1.96 * (variance / n).squareRoot()
        }
    }

    /// `loss[k]`: the query loss after k adaptation steps (k = 0 … steps; one entry for metric learners).
    public let loss: [Estimate]
    /// The same for accuracy, for classification tasks.
    public let accuracy: [Estimate]?
    public let tasks: Int
    /// Whose classes the episodes came from: `meta-test` (held out), or `meta-train` (``run(checkpoint:configuration:data:taskCount:steps:queryCount:seed:split:threads:group:)``
    /// with `split` `.train`).
    public var classes = "meta-test"
    /// Same-or-different verification over every (query, support) pair of the episodes: for learners that
    /// score pairs (``SiameseNetworks``).
    public var verification: Verification?

    public struct Verification: Sendable, Codable {
        /// Balanced accuracy of "same" at probability 0.5, the area under the ROC curve, and the pairs scored.
        public let accuracy: Double, auc: Double, pairs: Int
    }

    /// Adapts `meta` to each of `taskCount` tasks drawn from `seed` (the same tasks for every model given the
    /// same seed) and records the query loss after 0 … `steps` inner steps. Tasks run on `runner`'s threads,
    /// split across the ranks of `group` (each its ``ProcessGroup/share(of:)``, the results gathered to every
    /// rank); the result does not depend on the number of either.
    public static func run(_ learner: any MetaLearner, meta: [Float], tasks: any TaskDistribution, taskCount: Int,
                           steps: Int, queryCount: Int?, seed: UInt64, runner: TaskRunner,
                           group: any ProcessGroup = SingleProcess()) throws -> Evaluation {
        guard taskCount > 0 else { throw MetaCoreError.argument("evaluation needs at least 1 task, got \(taskCount)") }
        guard steps >= 0 else { throw MetaCoreError.argument("adaptation steps must be >= 0, got \(steps)") }
        // Metric learners return one value however many steps are asked for: size by the curves themselves.
        var losses: [[Double]] = [], accuracies: [[Double]] = []
        var classification = false
        let root = RandomSource(seed: seed)
        let share = group.share(of: taskCount)
        let curves = try runner.map(share.count) { j, worker in
            var random = root.fork(UInt64(share.lowerBound + j))
            let task = try tasks.seededSample(&random, queryCount: queryCount)
            return try learner.adaptationCurve(meta, task: task, steps: steps, workspace: worker.workspace)
        }
        // Per task and step: the loss and the accuracy (NaN: none).
        let values = try group.gather(curves.map { $0.flatMap { [$0.loss, $0.accuracy ?? .nan] } }, tasks: taskCount)
        for curve in values {
            for k in 0 ..< curve.count / 2 {
                if k == losses.count { losses.append([]); accuracies.append([]) }
                losses[k].append(curve[2 * k])
                if !curve[2 * k + 1].isNaN { accuracies[k].append(curve[2 * k + 1]); classification = true }
            }
        }
        return Evaluation(loss: losses.map(Estimate.init), accuracy: classification ? accuracies.map(Estimate.init) : nil,
                          tasks: taskCount)
    }
}

extension Evaluation {
    /// The settings `metactl eval` may change from a checkpoint's: the episodes' shape and the adaptation rate,
    /// and the components' options marked ``OptionSpec/evaluationMayChange`` (Omniglot's `episodes`). Anything
    /// else (another split, another backbone) would evaluate a different run.
    public static let overridableSettings: Set<String> = ["ways", "shots", "queries", "inner-lr"]

    /// Evaluates the meta-parameters of checkpoint `file` as `metactl eval` does: on `configuration`, the
    /// checkpoint's own with at most ``overridableSettings`` (and options evaluation may change) changed, on the meta-test split of its task family
    /// (or, with `split` `.train`, on fresh episodes of the classes it was meta-trained on: the generalisation gap),
    /// with `queryCount` queries per task (`nil`: the family's evaluation default, else the training queries;
    /// `queries` in `configuration` is ignored).
    /// Episodes are split across the ranks of `group`.
    /// Returns the evaluation and the trainer it restored.
    public static func run(checkpoint file: SafeTensors, configuration: TrainingConfiguration? = nil, data: DataSource = DataSource(),
                           taskCount: Int, steps: Int, queryCount: Int? = nil, seed: UInt64, split: TrainingConfiguration.Split = .test,
                           threads: Int = 1, group: any ProcessGroup = SingleProcess()) throws -> (Evaluation, MetaTrainer) {
        let stored = try TrainingCheckpoint.configuration(of: file)
        var (trainer, _) = try TrainingCheckpoint.restore(file, data: data, threads: threads)
        var config = configuration ?? stored
        let mayChange = overridableSettings.union(try stored.declaredOptions().values.filter(\.evaluationMayChange).map(\.name))
        let changed = Set(config.differences(from: stored)).subtracting(mayChange)
        guard changed.isEmpty else {
            throw MetaCoreError.argument("evaluation can change only \(mayChange.sorted().map { "--\($0)" }.joined(separator: ", ")) of the checkpoint's run; it was trained with "
                + changed.sorted().map { name in "--\(name) \(stored.arguments.first { $0.name == name }?.value ?? "unset")" }.joined(separator: ", "))
        }
        let family = try config.components().taskFamily
        let queries = queryCount ?? family.evaluationQueries ?? stored.queries
        config.queries = stored.queries
        if config != stored {
            let (restored, iteration) = (trainer.metaParameters, trainer.iteration)
            trainer = try config.makeTrainer(data: data, threads: threads)
            trainer.iteration = iteration   // the checkpoint's, which the report names
            guard restored.count == trainer.metaParameters.count else {
                throw MetaCoreError.shape("the checkpoint's model has \(restored.count) meta-parameters; with these overrides it would need \(trainer.metaParameters.count) (a classifier's head fixes its number of ways)")
            }
            trainer.metaParameters = restored
        }
        let tasks = try config.makeTasks(split, data: data)
        var result = try run(trainer.learner, meta: trainer.metaParameters, tasks: tasks,
                             taskCount: taskCount, steps: steps, queryCount: queries, seed: seed, runner: trainer.runner,
                             group: group)
        if split == .train { result.classes = "meta-train" }
        if let siamese = trainer.learner as? SiameseNetworks {
            let (accuracy, auc, pairs) = try siamese.verification(trainer.metaParameters, tasks: tasks, taskCount: taskCount,
                                                                  queryCount: queries, seed: seed, runner: trainer.runner)
            result.verification = Verification(accuracy: accuracy, auc: auc, pairs: pairs)
        }
        return (result, trainer)
    }
}
