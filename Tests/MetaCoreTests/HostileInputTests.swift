import CDataIO
import Foundation
import Testing
@testable import MetaCore

/// A safetensors file from a header given as text and `payload` bytes of data.
func safetensorsBytes(header: String, payload: Int) -> Data {
    var json = Array(header.utf8)
    json += [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8)
    var data = Data()
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
    data.append(contentsOf: json)
    data.append(contentsOf: [UInt8](repeating: 0, count: payload))
    return data
}

func expectCorrupt(_ data: Data, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(sourceLocation: sourceLocation) { _ = try SafeTensors(decoding: data, source: "x.safetensors") } throws: { error in
        (error as? MetaCoreError)?.kind == .corruptData && "\(error)".contains(reason)
    }
}

/// A PNG's signature and IHDR chunk claiming `width` x `height` gray pixels, an empty IDAT and IEND.
func pngHeader(width: UInt32, height: UInt32) -> [UInt8] {
    func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
        let typed = Array(type.utf8) + body
        let crc = typed.withUnsafeBufferPointer { mc_crc32(0, $0.baseAddress, $0.count) }
        return withUnsafeBytes(of: UInt32(body.count).bigEndian, Array.init) + typed + withUnsafeBytes(of: crc.bigEndian, Array.init)
    }
    let ihdr = withUnsafeBytes(of: width.bigEndian, Array.init) + withUnsafeBytes(of: height.bigEndian, Array.init) + [8, 0, 0, 0, 0]
    return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) + chunk("IEND", [])
}

/// A zip archive of one stored (uncompressed) entry whose directory records `crc` and `size`.
func storedZip(name: String, contents: [UInt8], crc: UInt32, size: UInt32? = nil) -> [UInt8] {
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    let nameBytes = Array(name.utf8), recorded = size ?? UInt32(contents.count)
    let common = le16(20) + le16(0) + le16(0) + le16(0) + le16(0) + le32(crc) + le32(UInt32(contents.count)) + le32(recorded)
        + le16(nameBytes.count) + le16(0)
    let local = le32(0x04034b50) + common + nameBytes + contents
    let central = le32(0x02014b50) + le16(20) + common + le16(0) + le16(0) + le16(0) + le32(0) + le32(0) + nameBytes
    let end = le32(0x06054b50) + le16(0) + le16(0) + le16(1) + le16(1) + le32(UInt32(central.count)) + le32(UInt32(local.count)) + le16(0)
    return local + central + end
}

@Suite("Hostile input: checkpoints, configurations, images, archives, files")
struct HostileInputTests {
    @Test func safetensorsSizesAreCheckedForOverflow() {
        for shape in ["[4611686018427387904, 4]", "[3037000500, 3037000500]", "[2305843009213693952]", "[-1]", "[1.5]", "[\"2\"]"] {
            expectCorrupt(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":\#(shape),"data_offsets":[0,4]}}"#, payload: 4), "tensor 'a'")
        }
        for offsets in ["[1, -9223372036854775808]", "[-4, 0]", "[0, 9223372036854775807]", "[0, 18446744073709551616]", "[4, 0]"] {
            expectCorrupt(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":\#(offsets)}}"#, payload: 4), "tensor 'a'")
        }
    }

    @Test func safetensorsRangesMustTileTheDataExactly() {
        let overlap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        expectCorrupt(safetensorsBytes(header: overlap, payload: 8), "overlaps")
        let alias = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        expectCorrupt(safetensorsBytes(header: alias, payload: 4), "overlaps")
        let gap = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        expectCorrupt(safetensorsBytes(header: gap, payload: 12), "bytes 4 ..< 8 belong to no tensor")
        expectCorrupt(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, payload: 9), "after the last tensor")
        // What tiles is accepted, zero-sized tensors included.
        let good = #"{"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        #expect(throws: Never.self) { _ = try SafeTensors(decoding: safetensorsBytes(header: good, payload: 12), source: "x") }
    }

    /// Every dtype of the format is read: the floating-point ones converted to float32, exactly where float32
    /// holds the value; integer and boolean tensors set aside and named.
    @Test func safetensorsOfEveryDtypeAreRead() throws {
        var payload = Data()
        func append<T: FixedWidthInteger>(_ values: [T]) { for v in values { withUnsafeBytes(of: v.littleEndian) { payload.append(contentsOf: $0) } } }
        append([(1.5 as Double).bitPattern, (-0.25 as Double).bitPattern])   // F64, bytes 0 ..< 16
        append([0x3C00, 0xC000, 0x0001, 0x7C00] as [UInt16])                 // F16: 1, -2, 2^-24, inf; 16 ..< 24
        append([0x3F80, 0xC0A0] as [UInt16])                                 // BF16: 1, -5; 24 ..< 28
        append([0x38, 0x01, 0x7E] as [UInt8])                                // F8_E4M3: 1, 2^-9, 448; 28 ..< 31
        append([0x3C, 0xC0] as [UInt8])                                      // F8_E5M2: 1, -2; 31 ..< 33
        append([5] as [Int64])                                               // I64; 33 ..< 41
        append([1, 0, 1] as [UInt8])                                         // BOOL; 41 ..< 44
        let header = #"{"d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"h":{"dtype":"F16","shape":[2,2],"data_offsets":[16,24]},"#
            + #""b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},"e4":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[28,31]},"#
            + #""e5":{"dtype":"F8_E5M2","shape":[2],"data_offsets":[31,33]},"1.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[33,41]},"#
            + #""t":{"dtype":"BOOL","shape":[3],"data_offsets":[41,44]}}"#
        var bytes = safetensorsBytes(header: header, payload: 0)
        bytes.append(payload)
        let file = try SafeTensors(decoding: bytes, source: "x")
        #expect(file.tensor(named: "d")?.scalars == [1.5, -0.25])
        #expect(file.tensor(named: "h")?.scalars == [1, -2, 0x1p-24, .infinity] && file.tensor(named: "h")?.shape == [2, 2])
        #expect(file.tensor(named: "b")?.scalars == [1, -5])
        #expect(file.tensor(named: "e4")?.scalars == [1, 0x1p-9, 448])
        #expect(file.tensor(named: "e5")?.scalars == [1, -2])
        #expect(file.tensor(named: "1.num_batches_tracked") == nil && file.tensor(named: "t") == nil)
        #expect(file.skipped.map(\.name) == ["1.num_batches_tracked", "t"] && file.skipped[0].dtype == "I64")
        #expect(Set(file.converted.map(\.dtype)) == ["F64", "F16", "BF16", "F8_E4M3", "F8_E5M2"])
        let summary = try #require(file.readingSummary)
        #expect(summary.contains("1 BF16 tensor") && summary.contains("ignored 2 integer tensors: 1.num_batches_tracked (I64), t (BOOL)"), "\(summary)")
        // A dtype's size decides the byte range; an unknown dtype is named.
        expectCorrupt(safetensorsBytes(header: #"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}"#, payload: 4), "does not match its byte range")
        expectCorrupt(safetensorsBytes(header: #"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#, payload: 16), "dtype F128, which is not one of")
        #expect(try SafeTensors(decoding: safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, payload: 4), source: "x").readingSummary == nil)
    }

    @Test func safetensorsHeadersAreStrictJSON() {
        let twice = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        expectCorrupt(safetensorsBytes(header: twice, payload: 4), "appears twice")
        let metadataTwice = #"{"__metadata__":{"iteration":"9"},"__metadata__":{"iteration":"0"}}"#
        expectCorrupt(safetensorsBytes(header: metadataTwice, payload: 0), "appears twice")
        let extra = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"more":1}}"#
        expectCorrupt(safetensorsBytes(header: extra, payload: 4), "exactly dtype, shape and data_offsets")
        expectCorrupt(safetensorsBytes(header: #"{"__metadata__":{"k":3}}"#, payload: 0), "not a string")
        // UTF-32 text is not UTF-8.
        var utf32 = Data()
        for scalar in #"{"__metadata__":{}}"#.unicodeScalars { withUnsafeBytes(of: scalar.value.littleEndian) { utf32.append(contentsOf: $0) } }
        var file = Data()
        withUnsafeBytes(of: UInt64(utf32.count).littleEndian) { file.append(contentsOf: $0) }
        expectCorrupt(file + utf32, "header")
        expectCorrupt(safetensorsBytes(header: String(repeating: "[", count: 100), payload: 0), "nesting")
        expectCorrupt(safetensorsBytes(header: #"{"a":1} x"#, payload: 0), "after the JSON value")
        #expect(throws: Never.self) {
            _ = try StrictJSON.parse(Array(#"{"k":"\u00e9\ud83d\ude00\n","n":[-1.5e3,0,true,false,null]}"#.utf8))
        }
    }

    /// A checkpoint whose stored configuration or optimiser state is out of bounds is refused with a reason,
    /// before anything is allocated from it.
    @Test func checkpointContentsAreValidated() throws {
        let fixture = try SafeTensors.read(from: fixtures[0].url)
        let stored = try TrainingCheckpoint.configuration(of: fixture)
        let values: [(String, Any)] = [("metaBatch", 1_000_000_000_000), ("metaBatch", Int.max), ("shots", 1_000_000_000_000),
                                       ("innerSteps", -1), ("innerLearningRate", -1.0), ("iterations", -5), ("ways", 3)]
        for (key, value) in values {
            var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(stored)) as! [String: Any]
            json[key] = value
            var file = fixture
            file.metadata["configuration"] = String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self)
            #expect(throws: MetaCoreError.self, "\(key) = \(value)") { try TrainingCheckpoint.restore(file) }
        }
        var isine = try TrainingCheckpoint.configuration(of: SafeTensors.read(from: fixtures[3].url))
        isine.ways = 1_000_000
        #expect(throws: MetaCoreError.self) { try isine.makeTrainer() }
        for (name, value) in [("optimizer.step", String(Int.max)), ("optimizer.step", "-1"), ("iteration", String(Int.max))] {
            var file = fixture
            file.metadata[name] = value
            #expect(throws: MetaCoreError.self, "\(name) = \(value)") { try TrainingCheckpoint.restore(file) }
        }
        for bad: Float in [.nan, -1, .infinity] {
            var file = fixture
            let index = file.tensors.firstIndex { $0.name == "optimizer.v" }!
            var scalars = file.tensors[index].tensor.scalars
            scalars[3] = bad
            file.tensors[index].tensor = try Tensor(shape: [scalars.count], scalars: scalars)
            #expect(throws: MetaCoreError.self, "optimizer.v with \(bad)") { try TrainingCheckpoint.restore(file) }
        }
        #expect(throws: Never.self) { try TrainingCheckpoint.restore(fixture) }
        // Without optimiser state: restored for evaluation; a mark with another value, or a marked file that still
        // holds optimiser tensors, is refused.
        let stripped = try TrainingCheckpoint.withoutOptimizerState(fixture)
        #expect(try TrainingCheckpoint.restore(stripped).0.metaParameters == TrainingCheckpoint.restore(fixture).0.metaParameters)
        var marked = fixture
        marked.metadata["optimizer.state"] = "omitted"
        #expect(throws: MetaCoreError.self) { try TrainingCheckpoint.restore(marked) }
        marked.metadata["optimizer.state"] = "present"
        #expect(throws: MetaCoreError.self) { try TrainingCheckpoint.restore(marked) }
        #expect(throws: MetaCoreError.self) { try TrainingCheckpoint.withoutOptimizerState(SafeTensors()) }
    }

    @Test func imagesAndArchivesAreBoundedBeforeAllocation() throws {
        for (width, height) in [(1_000_000, 1_000_000), (20_000, 20_000), (2000, 1000)] {
            #expect { try Image(decoding: pngHeader(width: UInt32(width), height: UInt32(height)), limits: Image.Limits(maximumPixels: 1 << 20)) } throws: {
                "\($0)".contains("\(width)x\(height)")
            }
        }
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let contents = Array("hello, omniglot".utf8)
        let crc = contents.withUnsafeBufferPointer { mc_crc32(0, $0.baseAddress, $0.count) }
        func archive(_ bytes: [UInt8]) throws -> ZipArchive {
            let url = directory.appendingPathComponent("\(UUID()).zip")
            try Data(bytes).write(to: url)
            return try ZipArchive(path: url.path)
        }
        #expect(try archive(storedZip(name: "a.png", contents: contents, crc: crc)).read(0, maximumSize: 100) == contents)
        #expect { try archive(storedZip(name: "a.png", contents: contents, crc: crc ^ 1)).read(0, maximumSize: 100) } throws: {
            "\($0)".contains("entry 0 is corrupt") && "\($0)".contains("CRC")
        }
        #expect { try archive(storedZip(name: "a.png", contents: contents, crc: crc)).read(0, maximumSize: 8) } throws: {
            "\($0)".contains("claims 15 bytes")
        }
    }

    @Test func everyValueOfAConfigurationIsBounded() {
        let base = TrainingConfiguration()
        for arguments in [["--shots", "1000000000000"], ["--queries", "1000000000000"], ["--meta-batch", "4611686018427387904"],
                          ["--inner-lr", "-1"], ["--meta-lr", "nan"], ["--clip", "0"], ["--clip-value", "-5"], ["--iterations", "-3"],
                          ["--ways", "5"], ["--task", "incremental-sine", "--ways", "9223372036854775807"]] {
            #expect(throws: MetaCoreError.self, "\(arguments)") { _ = try base.applying(arguments).makeTrainer() }
        }
    }

    @Test func staleTemporaryFilesOfKilledWritesAreRemoved() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()   // a process that is gone, as a killed writer is
        let stale = directory.appendingPathComponent(".c.safetensors.\(child.processIdentifier).tmp")
        let alive = directory.appendingPathComponent(".c.safetensors.1.tmp")   // init: never stale
        let other = directory.appendingPathComponent(".d.safetensors.\(child.processIdentifier).tmp")
        for url in [stale, alive, other] { try Data([1, 2, 3]).write(to: url) }
        try SafeTensors(tensors: [("a", Tensor(shape: [1], scalars: [1]))]).write(to: directory.appendingPathComponent("c.safetensors"))
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(left == [alive.lastPathComponent, other.lastPathComponent, "c.safetensors"].sorted())
    }

    /// A destination that cannot be written is found before any training is done.
    @Test func destinationsAreCheckedBeforeTraining() throws {
        var config = TrainingConfiguration()
        config.iterations = 5; config.metaBatch = 2
        let missing = URL(fileURLWithPath: "/nonexistent-\(UUID())/run.safetensors")
        var session = try TrainingSession(configuration: config, output: .init(checkpoint: missing))
        #expect { try session.run() } throws: { "\($0)".contains("does not exist") }
        #expect(session.trainer.iteration == 0)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var logged = try TrainingSession(configuration: config, output: .init(checkpoint: directory.appendingPathComponent("c.safetensors"),
                                                                            log: directory))
        #expect { try logged.run() } throws: { "\($0)".contains("is a directory") }
        #expect(logged.trainer.iteration == 0)
    }

    /// The same run writes the same checkpoint bytes but for the recorded training time.
    @Test func identicalRunsWriteIdenticalCheckpoints() throws {
        var config = TrainingConfiguration()
        config.iterations = 4; config.metaBatch = 2
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var files: [SafeTensors] = []
        for name in ["a", "b"] {
            let url = directory.appendingPathComponent("\(name).safetensors")
            var session = try TrainingSession(configuration: config, output: .init(checkpoint: url))
            _ = try session.run()
            var file = try SafeTensors.read(from: url)
            file.metadata["training.seconds"] = "0"
            files.append(file)
        }
        #expect(try files[0].encoded() == files[1].encoded())
        #expect(files[0].metadata["configuration"]!.hasPrefix(#"{"algorithm":"maml","backbone":"mlp","inner"#))
    }
}

/// The fuzz targets' seed corpus, and every input a fuzzer found (`Fuzz/corpus/TARGET`), replayed through the
/// parsers: the seeds must be accepted — they are what lets a fuzzer reach past the first checks — and a
/// finding kept there must be refused with a MetaCoreError, never crash.
@Suite("Fuzz corpus")
struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Fuzz/corpus").standardizedFileURL

    func inputs(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        let folder = Self.corpus.appendingPathComponent(target)
        return try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted().map {
            ($0, [UInt8](try Data(contentsOf: folder.appendingPathComponent($0))))
        }
    }

    @Test(arguments: ["safetensors", "checkpoint", "cache", "imagecache", "image", "zip"])
    func theCorpusReplays(_ target: String) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID()).zip")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let all = try inputs(target)
        #expect(all.filter { !$0.name.hasPrefix("crash-") && !$0.name.hasPrefix("finding-") }.count >= 1)
        for (name, bytes) in all {
            let run = {
                switch target {
                case "safetensors": try UntrustedInput.safetensors(Data(bytes))
                case "checkpoint": try UntrustedInput.checkpoint(Data(bytes))
                case "cache": try UntrustedInput.omniglotCache(bytes, fixChecksum: false)
                case "imagecache": try UntrustedInput.imageCache(bytes, fixChecksum: false)
                case "image": try UntrustedInput.image(bytes)
                default: try UntrustedInput.zip(bytes, scratch: scratch)
                }
            }
            if name.hasPrefix("crash-") || name.hasPrefix("finding-") {
                #expect(throws: MetaCoreError.self, "\(target)/\(name)") { try run() }
            } else {
                #expect(throws: Never.self, "\(target)/\(name)") { try run() }
            }
        }
    }
}
