import Foundation

/// A meta-trained model put to work on new classes: adapted to a few labelled images of each, it classifies
/// other images — what few-shot learning is for, and what `metactl predict` does.
///
/// ```swift
/// let classifier = try FewShotClassifier(checkpoint: SafeTensors.read(from: URL(fileURLWithPath: "maml.safetensors")))
/// let predictions = try classifier.classify(support: [("cat", catImages), ("dog", dogImages)], queries: photos)
/// print(predictions[0].label, predictions[0].probabilities)   // "dog" [0.03, 0.97]
/// ```
///
/// Images are prepared as the training run prepared its own (``ImagePreprocessing``, recorded in the
/// checkpoint; for older checkpoints, read from the run's task family, which then needs its dataset). A
/// gradient-based learner adapts by its inner steps, a metric learner by embedding the support set; each
/// predicts the class distribution its query loss is the cross-entropy of.
public struct FewShotClassifier: Sendable {
    public let configuration: TrainingConfiguration
    public let learner: any MetaLearner
    public let model: Model
    public let metaParameters: [Float]
    public let preprocessing: ImagePreprocessing
    /// Classes per support set a model with a classifier head was trained for (`nil`: a metric learner, any number).
    public let ways: Int?

    /// One query's prediction.
    public struct Prediction: Sendable, Equatable {
        /// The most probable class.
        public let label: String
        /// The probability of every support class, in the order the support set gave them.
        public let probabilities: [Float]
    }

    /// The classifier of a MetaCore checkpoint (`data`: where an older checkpoint's dataset is, to learn its preprocessing).
    public init(checkpoint file: SafeTensors, data: DataSource = DataSource()) throws {
        let configuration = try TrainingCheckpoint.configuration(of: file)
        let learner = try configuration.makeLearner(), embedding = try configuration.components().algorithm.embedding
        let preprocessing: ImagePreprocessing
        if let recorded = try TrainingCheckpoint.inputs(of: file) {
            preprocessing = recorded
        } else {
            guard let images = try configuration.makeTasks(.test, data: data) as? any ImageTaskDistribution else {
                throw MetaCoreError.argument("the checkpoint's tasks ('\(configuration.task)') are not images: a few-shot classifier classifies images")
            }
            preprocessing = images.preprocessing
        }
        guard let classes = embedding ? 2 : configuration.ways else {
            throw MetaCoreError(.corruptData, "the checkpoint's configuration has no number of ways for its classifier head")
        }
        let model = try configuration.makeModel(for: Shapes(inputShape: preprocessing.inputShape, outputShape: [classes]))
        self.configuration = configuration; self.learner = learner; self.model = model; self.preprocessing = preprocessing
        ways = embedding ? nil : classes
        metaParameters = try TrainingCheckpoint.metaParameters(of: file, learner: learner, model: model,
                                                               initial: learner.initialMetaParameters(for: model, seed: configuration.seed))
    }

    /// Adapts to `support` — each class's name and its labelled images — and classifies `queries`, together
    /// (batch-norm normalises them as one batch, as in evaluation). `steps`: the gradient learners' adaptation
    /// steps (default: the run's inner steps).
    public func classify(support: [(label: String, images: [Image])], queries: [Image], steps: Int? = nil) throws -> [Prediction] {
        guard support.count >= 2 else { throw MetaCoreError.argument("a support set needs at least 2 classes, got \(support.count)") }
        guard Set(support.map(\.label)).count == support.count else { throw MetaCoreError.argument("the support set names a class twice") }
        if let empty = support.first(where: { $0.images.isEmpty }) { throw MetaCoreError.argument("support class '\(empty.label)' has no images") }
        guard !queries.isEmpty else { throw MetaCoreError.argument("there are no query images to classify") }
        var inputs: [Float] = [], labels: [Int32] = []
        for (c, entry) in support.enumerated() {
            for image in entry.images {
                inputs += try preprocessing.input(image)
                labels.append(Int32(c))
            }
        }
        let supportBatch = try Batch(inputs: Tensor(shape: [labels.count] + preprocessing.inputShape, scalars: inputs), labels: labels)
        let queryInputs = try Tensor(shape: [queries.count] + preprocessing.inputShape, scalars: queries.flatMap { try preprocessing.input($0) })
        let scores = try predict(support: supportBatch, queries: queryInputs, steps: steps)
        let names = support.map(\.label), ways = names.count
        return (0 ..< queries.count).map { q in
            let row = scores.scalars[q * ways ..< (q + 1) * ways]
            let top = row.max()!, exponentials = row.map { exp(Double($0 - top)) }, total = exponentials.reduce(0, +)
            let probabilities = exponentials.map { Float($0 / total) }
            return Prediction(label: names[row.firstIndex(of: top)! - q * ways], probabilities: probabilities)
        }
    }

    /// The class scores `[queries, ways]` (logits or log-probabilities) for `queries` after adapting to `support`,
    /// whose labels are `0 ..< ways`.
    public func predict(support: Batch, queries: Tensor, steps: Int? = nil) throws -> Tensor {
        guard case .labels(let labels) = support.targets, let most = labels.max() else {
            throw MetaCoreError(.invalidLabel, "a support set of labelled images is needed")
        }
        if let ways, Int(most) + 1 != ways || Set(labels).count != ways {
            throw MetaCoreError.argument("this \(learner.name) model was meta-trained on \(ways)-way tasks: its support set needs \(ways) classes, not \(Set(labels).count)")
        }
        let steps = steps ?? configuration.innerSteps
        guard steps >= 0 else { throw MetaCoreError.argument("adaptation steps must be >= 0, got \(steps)") }
        return try learner.predict(metaParameters, support: support, queries: queries, steps: steps, workspace: Workspace(model: model))
    }

    /// The shapes a model is built for, when no task family is at hand.
    private struct Shapes: TaskDistribution {
        let inputShape: [Int], outputShape: [Int]
        var isClassification: Bool { true }
        func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
            throw MetaCoreError.argument("a few-shot classifier's shapes draw no tasks")
        }
    }
}
