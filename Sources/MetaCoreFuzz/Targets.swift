import Foundation
import MetaCore

/// The fuzz targets: each feeds one input to one parser of outside bytes (``UntrustedInput``). A parser may
/// throw ``MetaCoreError``; anything else it does to an input is a finding.
enum FuzzTarget: String, CaseIterable {
    case safetensors, checkpoint, cache, imagecache, image, zip

    /// Runs one input.
    func run(_ bytes: [UInt8]) {
        do {
            switch self {
            case .safetensors: try UntrustedInput.safetensors(Data(bytes))
            case .checkpoint: try UntrustedInput.checkpoint(Data(bytes))
            case .cache: try UntrustedInput.omniglotCache(bytes)
            case .imagecache: try UntrustedInput.imageCache(bytes)
            case .image: try UntrustedInput.image(bytes)
            case .zip: try UntrustedInput.zip(bytes, scratch: Self.scratch)
            }
        } catch is MetaCoreError {
            // A clear error is the right answer to a bad input.
        } catch {
            fatalError("\(rawValue): an error that is not a MetaCoreError: \(error)")
        }
    }

    /// Where the zip target writes its input (libzip reads archives from files): in memory where possible.
    static let scratch: URL = {
        let directory = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        return URL(fileURLWithPath: directory).appendingPathComponent("metacore-fuzz-\(getpid()).zip")
    }()

    /// The target a fuzzing binary runs: `METACORE_FUZZ_TARGET`.
    static let selected: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["METACORE_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            fatalError("set METACORE_FUZZ_TARGET to one of \(allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
        }
        return target
    }()
}

#if FUZZING
import CFuzzDriver

/// Hands the process to libFuzzer's driver (the binary is built with coverage instrumentation and linked with
/// libFuzzer's no-main library: `make fuzz`), which calls the selected target with every input it makes.
@main
struct Fuzz {
    static func main() {
        _ = FuzzTarget.selected
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            FuzzTarget.selected.run(size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : [])
            return 0
        })
    }
}
#else
/// Without libFuzzer: runs inputs through a target, `metacore-fuzz TARGET FILE|DIRECTORY ...` (the seed corpus
/// and every input a fuzzer found stay regression cases), or writes a seed corpus, `metacore-fuzz --seed DIRECTORY`.
@main
struct Replay {
    static func main() {
        do { try replay() } catch {
            print("metacore-fuzz: \(error)")
            exit(1)
        }
    }

    static func replay() throws {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--seed", arguments.count == 2 { return try Seeds.write(to: URL(fileURLWithPath: arguments[1])) }
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
            print("usage: metacore-fuzz TARGET FILE|DIRECTORY ... (targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))) | --seed DIRECTORY")
            exit(2)
        }
        arguments.removeFirst()
        var count = 0
        for path in arguments {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw MetaCoreError(.missingData, "no input at \(path)") }
            let files = isDirectory.boolValue
                ? try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { path + "/" + $0 } : [path]
            for file in files {
                target.run([UInt8](try Data(contentsOf: URL(fileURLWithPath: file))))
                count += 1
            }
        }
        try? FileManager.default.removeItem(at: FuzzTarget.scratch)
        print("\(target.rawValue): \(count) inputs, no crash")
    }
}
#endif
