import ArgumentParser
import Foundation
import MetaCore

/// Adapts a meta-trained model to a few labelled images of new classes and classifies other images.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images with a meta-trained model adapted to a few labelled examples of each class.",
        discussion: """
            --support is a folder with one folder of images per class (PNG or JPEG; as many shots per class as you \
            have). --query takes image files, or folders: a folder of class folders gives each query its true class \
            (named as in --support), and the accuracy is reported. Images are prepared as the training run prepared \
            its own. A model with a classifier head (MAML and its relatives) needs as many classes as it was \
            meta-trained for; metric learners (protonet, matchnet, r2d2, siamese) take any number.
            """)

    @Option(help: "The MetaCore checkpoint.") var checkpoint: String
    @Option(help: "Folder of class folders: the labelled examples to adapt to.") var support: String
    @Option(parsing: .upToNextOption, help: "Images to classify: files, folders of images, or folders of class folders.")
    var query: [String]
    @Option(help: "Adaptation steps of gradient-based learners (default: the run's inner steps).") var steps: Int?
    @Option(help: "csv or jsonl.") var format = "csv"
    @Option(help: "Write the predictions to this file instead of standard output.") var output: String?
    @OptionGroup var dataset: DatasetOptions

    func validate() throws {
        guard ["csv", "jsonl"].contains(format) else { throw ValidationError("--format is csv or jsonl, not '\(format)'") }
        guard !query.isEmpty else { throw ValidationError("pass --query with image files or folders") }
    }

    /// One image to classify, with its class when its folder names one.
    struct Query {
        let path: String, label: String?
    }

    func run() throws {
        let file = try SafeTensors.read(from: URL(fileURLWithPath: checkpoint))
        let config = try TrainingCheckpoint.configuration(of: file)
        let classifier = try FewShotClassifier(checkpoint: file, data: dataset.source(for: config))
        let supportRoot = URL(fileURLWithPath: support)
        let classes = try Self.folders(in: supportRoot)
        guard !classes.isEmpty else { throw ValidationError("\(support) holds no class folders (SUPPORT/CLASS/*.png|jpg)") }
        let supportSet = try classes.map { folder in
            (label: folder.lastPathComponent, images: try Self.images(in: folder).map { try Image(contentsOf: $0) })
        }
        let queries = try query.flatMap(Self.queries(at:))
        guard !queries.isEmpty else { throw ValidationError("--query names no PNG or JPEG images") }
        let predictions = try classifier.classify(support: supportSet, queries: try queries.map { try Image(contentsOf: URL(fileURLWithPath: $0.path)) },
                                                  steps: steps)
        let names = supportSet.map(\.label)
        var text = ""
        if format == "csv" {
            text = (["file", "label", "predicted"] + names.map { "p(\(Self.csvField($0)))" }).joined(separator: ",") + "\n"
            for (q, p) in zip(queries, predictions) {
                text += ([Self.csvField(q.path), Self.csvField(q.label ?? ""), Self.csvField(p.label)] + p.probabilities.map { String(format: "%.6f", $0) })
                    .joined(separator: ",") + "\n"
            }
        } else {
            for (q, p) in zip(queries, predictions) {
                struct Line: Encodable { let file: String; let label: String?; let predicted: String; let probabilities: [String: Float] }
                let line = Line(file: q.path, label: q.label, predicted: p.label,
                                probabilities: Dictionary(uniqueKeysWithValues: zip(names, p.probabilities)))
                text += String(decoding: try encodeJSON(line), as: UTF8.self).replacingOccurrences(of: "\n", with: "") + "\n"
            }
        }
        if let output { try writeAtomically(Data(text.utf8), to: URL(fileURLWithPath: output)) } else { print(text, terminator: "") }
        let known = zip(queries, predictions).filter { $0.0.label != nil }
        if !known.isEmpty {
            let right = known.filter { $0.0.label == $0.1.label }.count
            let fewest = supportSet.map(\.images.count).min()!, most = supportSet.map(\.images.count).max()!
            let shots = fewest == most ? "\(fewest)-shot" : "\(fewest) to \(most) shots"
            printError(String(format: "accuracy %.2f%% (%d of %d queries of known class), %d-way %@, %@", 100 * Double(right) / Double(known.count), right,
                              known.count, names.count, shots, classifier.learner.name))
        }
    }

    static func folders(in url: URL) throws -> [URL] { try ImageFolder.classFolders(in: url) }

    static func images(in url: URL) throws -> [URL] { try ImageFolder.imageFiles(in: url) }

    static func isDirectory(_ url: URL) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &directory) && directory.boolValue
    }

    /// A file; or a folder's images; or, for a folder of class folders, their images with their classes. Paths
    /// are written as given, joined with the names found under them.
    static func queries(at path: String) throws -> [Query] {
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("no file or folder at \(path)") }
        guard isDirectory(url) else { return [Query(path: path, label: nil)] }
        let base = path.hasSuffix("/") ? String(path.dropLast()) : path
        let classes = try folders(in: url)
        if classes.isEmpty { return try images(in: url).map { Query(path: "\(base)/\($0.lastPathComponent)", label: nil) } }
        return try classes.flatMap { folder in
            try images(in: folder).map { Query(path: "\(base)/\(folder.lastPathComponent)/\($0.lastPathComponent)", label: folder.lastPathComponent) }
        }
    }

    static func csvField(_ text: String) -> String {
        text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }
}
