import ArgumentParser
import Foundation
import MetaCore

/// Writes a checkpoint's parameters without its optimiser state: as the `state_dict` PyTorch loads into the same
/// architecture, or as a smaller MetaCore checkpoint for evaluation.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint's parameters without its optimiser state: for PyTorch, or for MetaCore's evaluation.",
        discussion: """
            --format pytorch (the default): the model's parameters under their nn.Sequential names (0.weight, 0.bias, …), \
            in float32, and nothing else: no optimiser state, no learner meta-parameters (Meta-SGD's rates, MAML++'s \
            per-step rates), and no batch-norm running statistics — MetaCore's batch-norm normalises with each batch's \
            own statistics, so load it into nn.BatchNorm2d(C, track_running_stats=False) and \
            load_state_dict(..., strict=True) takes it. The metadata says so, and holds the architecture.

            --format metacore: the checkpoint as it is, less the meta-optimiser's state (Adam's two moments: two thirds \
            of an Adam run's bytes). eval, continual, predict and train --init-from read it as they read the checkpoint; \
            train --resume refuses it, since the run could not continue exactly. Keep the training checkpoint to resume.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case pytorch, metacore }

    @Option(help: "The MetaCore checkpoint.") var checkpoint: String
    @Option(help: "The safetensors file to write (not the checkpoint itself).") var output: String
    @Option(help: "pytorch: a state_dict for PyTorch; metacore: a MetaCore checkpoint for evaluation.") var format: Format = .pytorch
    @OptionGroup var dataset: DatasetOptions

    func validate() throws {
        let input = URL(fileURLWithPath: checkpoint).standardizedFileURL.resolvingSymlinksInPath()
        guard input != URL(fileURLWithPath: output).standardizedFileURL.resolvingSymlinksInPath() else {
            throw ValidationError("--output names the checkpoint itself; writing there would lose its optimiser state")
        }
    }

    func run() throws {
        let file = try SafeTensors.read(from: URL(fileURLWithPath: checkpoint))
        if format == .metacore { return try writeForEvaluation(file) }
        let config = try TrainingCheckpoint.configuration(of: file)
        let model = try config.makeModel(data: dataset.source(for: config))
        var tensors: [(name: String, tensor: Tensor)] = []
        for entry in model.layout.entries {
            guard let tensor = file.tensor(named: entry.name), tensor.shape == entry.shape else {
                throw ValidationError("\(checkpoint) has no tensor \(entry.name) of shape \(entry.shape), which the run's model has")
            }
            tensors.append((entry.name, tensor))
            // nn.BatchNorm2d always has a weight: a batch-norm that learns no scale exports its γ of 1.
            if let norm = model.nodes[entry.layer].layer as? BatchNorm, !norm.learnsScale {
                tensors.append((String(entry.name.dropLast("bias".count)) + "weight",
                                try Tensor(shape: entry.shape, scalars: [Float](repeating: 1, count: entry.count))))
            }
        }
        let normalized = model.layers.contains { $0 is BatchNorm }
        var metadata = ["format": "pt", "metacore.algorithm": config.algorithm, "metacore.architecture": model.summary]
        if normalized {
            metadata["metacore.batch_norm"] = "batch statistics in training and evaluation (transductive); no running statistics: nn.BatchNorm2d(C, track_running_stats=False)"
        }
        try SafeTensors(tensors: tensors, metadata: metadata).write(to: URL(fileURLWithPath: output))
        print("wrote \(tensors.count) tensors (\(model.parameterCount) parameters) of \(checkpoint) to \(output)"
              + (normalized ? "; its batch-norm uses batch statistics (track_running_stats=False)" : ""))
    }

    private func writeForEvaluation(_ file: SafeTensors) throws {
        let stripped = try TrainingCheckpoint.withoutOptimizerState(file)
        let bytes = try stripped.encoded()
        try writeAtomically(bytes, to: URL(fileURLWithPath: output))
        let before = (try? FileManager.default.attributesOfItem(atPath: checkpoint)[.size] as? Int) ?? 0
        print("wrote \(checkpoint) without its optimiser state to \(output): \(stripped.tensors.count) tensors, "
              + String(format: "%.1f MB of the checkpoint's %.1f MB", Double(bytes.count) / 1e6, Double(before) / 1e6))
    }
}
