import Foundation
import MetaCore

/// The seed corpus the fuzz targets start from (`metacore-fuzz --seed DIRECTORY` writes the generated part;
/// the PNG and zip seeds are real Omniglot files and the JPEG ones small made-up images, kept in `Fuzz/corpus`).
enum Seeds {
    static func write(to directory: URL) throws {
        func save(_ target: FuzzTarget, _ name: String, _ bytes: Data) throws {
            let folder = directory.appendingPathComponent(target.rawValue)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try bytes.write(to: folder.appendingPathComponent(name))
        }
        let small = SafeTensors(tensors: [("a", try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])), ("b", try Tensor(shape: [0], scalars: []))],
                                metadata: ["format": "example"])
        try save(.safetensors, "small.safetensors", try small.encoded())
        for (name, arguments) in [("maml", ["--meta-batch", "2", "--hidden", "4"]),
                                  ("metasgd", ["--algorithm", "metasgd", "--meta-batch", "2", "--hidden", "3,3"]),
                                  ("oml", ["--algorithm", "oml", "--task", "incremental-sine", "--ways", "2", "--hidden", "4,4", "--meta-optimizer", "sgd"])] {
            let config = try TrainingConfiguration().applying(arguments + ["--iterations", "2"]).resolved()
            var trainer = try config.makeTrainer()
            for _ in 0 ..< 2 { _ = try trainer.step() }
            let file = try TrainingCheckpoint.make(trainer, configuration: config, trainingSeconds: 1.5).encoded()
            try save(.checkpoint, "\(name).safetensors", file)
            try save(.safetensors, "\(name).safetensors", file)
        }
        try save(.cache, "two-characters.cache", Data(UntrustedInput.sampleOmniglotCache()))
        try save(.imagecache, "three-classes.cache", Data(try UntrustedInput.sampleImageCache()))
    }
}
