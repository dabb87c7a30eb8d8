extension MetaTrainer {
    /// Starts the run from the weights in `file` instead of a fresh initialisation: every model parameter by
    /// its name and shape (`0.weight`, `1.bias`, … — a MetaCore checkpoint, or the `state_dict` of the same
    /// architecture saved from PyTorch as safetensors), and the learner's other meta-parameters (Meta-SGD's rates,
    /// …) where the file has them. Batch-norm's running statistics, a MetaCore checkpoint's optimiser state and
    /// the integer tensors the reader set aside (``SafeTensors/skipped``) are accepted and not used. Only before
    /// the first iteration; the optimiser starts fresh.
    ///
    /// Throws, listing them, if the file lacks a model parameter, has a tensor of another shape than the model's,
    /// or has tensors that are none of the above. Returns a line saying what was read.
    public mutating func initialize(from file: SafeTensors, source: String) throws -> String {
        guard iteration == 0 else {
            throw MetaCoreError.argument("a run at iteration \(iteration) cannot start from other weights; only a new run can")
        }
        let model = self.model
        var expected = model.layout.entries.map { (name: $0.name, shape: $0.shape, range: $0.range, required: true) }
        expected += learner.extraMetaParameters(for: model).map { ($0.name, [$0.range.count], $0.range, false) }
        let state = Set(model.stateLayout.entries.map(\.name))
        let given = Dictionary(file.tensors.map { ($0.name, $0.tensor) }, uniquingKeysWith: { first, _ in first })
        var missing: [String] = [], mismatched: [String] = [], parameters = metaParameters, read = 0
        for entry in expected {
            guard let tensor = given[entry.name] else {
                if entry.required { missing.append("\(entry.name) \(describe(entry.shape))") }
                continue
            }
            guard tensor.shape == entry.shape || (!entry.required && tensor.count == entry.range.count) else {
                mismatched.append("\(entry.name) is \(describe(tensor.shape)) in the file, \(describe(entry.shape)) in the model")
                continue
            }
            parameters.replaceSubrange(entry.range, with: tensor.scalars)
            read += 1
        }
        let known = Set(expected.map(\.name))
        let extra = file.tensors.map(\.name).filter { !known.contains($0) && !state.contains($0) && !$0.hasPrefix("optimizer.") }
        var problems: [String] = []
        if !missing.isEmpty { problems.append("missing \(missing.joined(separator: ", "))") }
        if !mismatched.isEmpty { problems.append(mismatched.joined(separator: "; ")) }
        if !extra.isEmpty { problems.append("not in the model: \(extra.joined(separator: ", "))") }
        guard problems.isEmpty else {
            throw MetaCoreError.shape("\(source) does not fit the model (\(model.parameterCount) parameters in \(model.layout.entries.count) tensors): \(problems.joined(separator: "; "))")
        }
        if let bad = parameters.firstIndex(where: { !$0.isFinite }) {
            throw MetaCoreError(.corruptData, "\(source) holds a value that is not finite (\(parameters[bad]), meta-parameter \(bad))")
        }
        metaParameters = parameters
        return "started from \(read) tensors of \(source)" + (file.readingSummary.map { " (\($0))" } ?? "")
    }
}
