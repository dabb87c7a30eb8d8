import Foundation
import MetaCore
import Yams

/// `metactl train --config FILE`: a run described in YAML, one key per command-line option (`algorithm: maml`,
/// `inner-lr: 0.4`, `channels: 32`, `data: ../omniglot`, `checkpoint: run.safetensors`, …). The file's options
/// go before the command line's, so a flag given on the command line overrides the file.
enum ConfigurationFile {
    /// The file each option came from, for error messages (set once, before parsing).
    nonisolated(unsafe) static var origin: [String: String] = [:]

    /// `arguments` (after the program name) with the options of `metactl train`'s `--config` file, if any, put
    /// right after the subcommand's name.
    static func expand(_ arguments: [String]) throws -> [String] {
        guard arguments.first == "train", let index = arguments.firstIndex(where: { $0 == "--config" || $0.hasPrefix("--config=") }) else { return arguments }
        let word = arguments[index]
        let path: String
        if word == "--config" {
            guard index + 1 < arguments.count else { throw MetaCoreError(.invalidArgument, "--config needs a file") }
            path = arguments[index + 1]
        } else {
            path = String(word.dropFirst("--config=".count))
        }
        let options = try read(path)
        for (key, _) in options { origin[key] = path }
        return [arguments[0]] + options.flatMap { key, value in tokens(key, value) } + Array(arguments[1...])
    }

    /// The file's keys and values, in order; throws naming the file and the key for anything but `key: value`
    /// (a list of numbers is taken as a comma-separated value).
    static func read(_ path: String) throws -> [(key: String, value: String)] {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= 1 << 20 else { throw MetaCoreError(.corruptData, "\(path) is \(size) bytes; a configuration file is at most 1 MiB") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MetaCoreError(.missingData, "cannot read the configuration file \(path)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw MetaCoreError(.corruptData, "\(path) is not UTF-8 text")
        }
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            let reason = "\(error)"   // libyaml quotes the offending line, which may be long
            throw MetaCoreError(.corruptData, "\(path) is not valid YAML: \(reason.count > 300 ? reason.prefix(300) + "…" : reason)")
        }
        guard let node else { return [] }
        guard let mapping = node.mapping else {
            throw MetaCoreError(.corruptData, "\(path) must be a mapping of option names to values (algorithm: maml, shots: 1, …)")
        }
        var seen = Set<String>(), result: [(String, String)] = []
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.scalar?.string, !key.isEmpty else {
                throw MetaCoreError(.corruptData, "\(path): every key must be an option name, got \(keyNode)")
            }
            guard seen.insert(key).inserted else { throw MetaCoreError(.corruptData, "\(path): key '\(key)' appears twice") }
            if let scalar = valueNode.scalar {
                guard valueNode.null == nil else { throw MetaCoreError(.corruptData, "\(path): key '\(key)' has no value") }
                result.append((key, scalar.string))
            } else if let sequence = valueNode.sequence, sequence.allSatisfy({ $0.scalar != nil }) {
                result.append((key, sequence.compactMap { $0.scalar?.string }.joined(separator: ",")))
            } else {
                throw MetaCoreError(.corruptData, "\(path): key '\(key)' must have a single value (or a list of numbers)")
            }
        }
        return result
    }

    /// `key: value` as command-line words. A configuration setting or a component's option takes its value as
    /// the next word; any other option that is true/false is a flag of the command (`resume: true` is `--resume`).
    static func tokens(_ key: String, _ value: String) -> [String] {
        let configuration = TrainingConfiguration.settings.contains { $0.name == key } || Registry.allOptions.contains { $0.name == key }
        if !configuration, ["true", "false"].contains(value.lowercased()) { return value.lowercased() == "true" ? ["--\(key)"] : [] }
        return ["--\(key)", value]
    }

    /// A configuration as a file `read` accepts: every setting and option, then `extra` (the dataset path).
    static func render(_ config: TrainingConfiguration, extra: [(String, String)]) -> String {
        func quoted(_ value: String) -> String {
            let plain = value.allSatisfy { $0.isLetter || $0.isNumber || "._,/+-".contains($0) } && !value.isEmpty
            return plain ? value : "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        let lines = (config.arguments + extra).map { "\($0.0): \(quoted($0.1))" }
        return (["# metactl train --config FILE repeats this run; flags on the command line override these keys."] + lines)
            .joined(separator: "\n") + "\n"
    }
}
