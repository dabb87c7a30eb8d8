import ArgumentParser
import Foundation
import MetaCore

/// Writes a checkpoint's model as the `state_dict` PyTorch loads into the same architecture.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint's model parameters as a safetensors state_dict for PyTorch.",
        discussion: """
            The file holds the model's parameters under their nn.Sequential names (0.weight, 0.bias, …), in float32, \
            and nothing else: no optimiser state, no learner meta-parameters (Meta-SGD's rates, MAML++'s per-step \
            rates), and no batch-norm running statistics — MetaCore's batch-norm normalises with each batch's own \
            statistics, so load it into nn.BatchNorm2d(C, track_running_stats=False) and \
            load_state_dict(..., strict=True) takes it. The metadata says so, and holds the architecture.
            """)

    @Option(help: "The MetaCore checkpoint.") var checkpoint: String
    @Option(help: "The safetensors file to write.") var output: String
    @OptionGroup var dataset: DatasetOptions

    func run() throws {
        let file = try SafeTensors.read(from: URL(fileURLWithPath: checkpoint))
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
}
