/// The continual-learning protocol: a learner meets a stream's stages one after another and, after each, is
/// tested on every stage seen so far.
public enum ContinualEvaluation {
    /// Runs `learner` over `stream` from `parameters` and returns the performance matrix: accuracy (among
    /// the classes seen so far) for classification, mean squared error for regression. For classification
    /// the output units of the stream's classes are first reset to zero (the classes are new: OML's
    /// meta-test protocol), `resetOutputs` permitting. `log` is called after each stage with its index and
    /// the row of the matrix.
    public static func run(_ learner: inout some ContinualLearner, parameters: [Float], stream: ContinualStream,
                           workspace: Workspace, seed: UInt64, resetOutputs: Bool = true,
                           log: (Int, [Double]) -> Void = { _, _ in }) throws -> (metrics: ContinualMetrics, parameters: [Float]) {
        let model = workspace.model
        try model.layout.check(parameters, "parameter vector")
        var theta = parameters, random = RandomSource(seed: seed)
        if let classes = stream.classesSeen?.last, resetOutputs {
            guard let outputs = model.outputShape.first, model.outputShape.count == 1, classes <= outputs else {
                throw MetaCoreError.shape("the stream has \(classes) classes but the model outputs \(describe(model.outputShape))")
            }
            for i in OML.outputUnits(of: Set((0 ..< Int32(classes)).map { $0 }), model: model) { theta[i] = 0 }
        }
        var matrix: [[Double]] = []
        for (i, stage) in stream.stages.enumerated() {
            try learner.learn(stage.train, parameters: &theta, workspace: workspace, random: &random)
            guard theta.allSatisfy(\.isFinite) else {
                throw MetaCoreError.argument("the parameters diverged (NaN or infinity) while learning stage \(i); lower the learning rate")
            }
            let row = try (0 ... i).map { j in
                try performance(at: theta, on: stream.stages[j].test, classes: stream.classesSeen?[i], workspace: workspace)
            }
            matrix.append(row)
            log(i, row)
        }
        return (try ContinualMetrics(matrix: matrix, higherIsBetter: stream.isClassification), theta)
    }

    /// Accuracy with predictions restricted to the first `classes` outputs, or (regression) the MSE.
    static func performance(at theta: [Float], on test: Batch, classes: Int?, workspace: Workspace) throws -> Double {
        guard let classes, case .labels(let labels) = test.targets else { return try workspace.loss(at: theta, on: test).loss }
        let logits = try workspace.predict(at: theta, inputs: test.inputs)
        let width = logits.shape[1]
        var correct = 0
        for (n, label) in labels.enumerated() {
            let row = logits.scalars[n * width ..< n * width + classes]
            if row.indices.max(by: { row[$0] < row[$1] })! - n * width == Int(label) { correct += 1 }
        }
        return Double(correct) / Double(labels.count)
    }
}
