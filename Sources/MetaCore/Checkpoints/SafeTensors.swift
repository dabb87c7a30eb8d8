import Foundation

/// Named float32 tensors and string metadata in the safetensors format (the one PyTorch's and JAX's users
/// read with `safetensors.torch.load_file` / `safetensors.numpy.load_file`):
/// an 8-byte little-endian header length N, N bytes of JSON
/// `{"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}`,
/// then the tensors' little-endian bytes.
public struct SafeTensors: Sendable {
    public var tensors: [(name: String, tensor: Tensor)]
    public var metadata: [String: String]

    public init(tensors: [(name: String, tensor: Tensor)] = [], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    public func tensor(named name: String) -> Tensor? { tensors.first { $0.name == name }?.tensor }

    /// The file's bytes.
    public func encoded() throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for (name, tensor) in tensors {
            guard name != "__metadata__", header[name] == nil else {
                throw MetaCoreError.argument("tensor name '\(name)' is reserved or repeated")
            }
            header[name] = ["dtype": "F32", "shape": tensor.shape, "data_offsets": [offset, offset + 4 * tensor.count]] as [String: Any]
            offset += 4 * tensor.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data starts 8-byte aligned, as the reference implementation does.
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var data = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for (_, tensor) in tensors {
            tensor.scalars.withUnsafeBufferPointer { buffer in
                for x in buffer { withUnsafeBytes(of: x.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            }
        }
        return data
    }

    /// The largest header accepted, as the reference implementation (100 MB).
    public static let maximumHeaderBytes = 100_000_000

    /// Parses and validates a safetensors file's bytes; `source` names it in error messages. As strict as the
    /// reference implementation: a UTF-8 JSON header with unique keys, every size checked for overflow, and
    /// tensors whose byte ranges tile the data section exactly (no overlap, no gap, nothing after the last).
    public init(decoding data: Data, source: String) throws {
        func corrupt(_ why: String) -> MetaCoreError { MetaCoreError(.corruptData, "\(source) is not a valid safetensors file: \(why)") }
        guard data.count >= 8 else { throw corrupt("\(data.count) bytes is shorter than the 8-byte header length") }
        let length = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length <= UInt64(data.count - 8) else { throw corrupt("header length \(length) exceeds the file (\(data.count) bytes)") }
        guard length <= UInt64(Self.maximumHeaderBytes) else { throw corrupt("header length \(length) exceeds \(Self.maximumHeaderBytes) bytes") }
        let start = data.startIndex + 8 + Int(length)
        let header: StrictJSON
        do { header = try StrictJSON.parse(data[data.startIndex + 8 ..< start]) } catch let failure as StrictJSON.Failure {
            throw corrupt("header: \(failure.message)")
        }
        guard case .object(let members) = header else { throw corrupt("the header is not a JSON object") }
        let payload = data.count - 8 - Int(length)
        var entries: [(name: String, shape: [Int], begin: Int, end: Int)] = []
        var metadata: [String: String] = [:]
        for (name, value) in members {
            if name == "__metadata__" {
                guard case .object(let pairs) = value else { throw corrupt("__metadata__ must map strings to strings") }
                for (key, item) in pairs {
                    guard case .string(let text) = item else { throw corrupt("__metadata__ entry '\(key)' is not a string") }
                    metadata[key] = text
                }
                continue
            }
            guard case .object(let fields) = value, Set(fields.map(\.key)) == ["dtype", "shape", "data_offsets"],
                  let dtypeValue = fields.first(where: { $0.key == "dtype" })?.value, case .string(let dtype) = dtypeValue,
                  let shapeValue = fields.first(where: { $0.key == "shape" })?.value, case .array(let dimensions) = shapeValue,
                  let offsetsValue = fields.first(where: { $0.key == "data_offsets" })?.value, case .array(let offsets) = offsetsValue,
                  offsets.count == 2 else {
                throw corrupt("entry '\(name)' must have exactly dtype, shape and data_offsets")
            }
            guard dtype == "F32" else { throw corrupt("tensor '\(name)' has dtype \(dtype); MetaCore reads F32") }
            let shape = dimensions.map(\.integer)
            guard shape.allSatisfy({ ($0 ?? -1) >= 0 }) else { throw corrupt("tensor '\(name)' has a shape that is not a list of non-negative whole numbers") }
            var count = 1
            for dimension in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: dimension!)
                guard !overflow else { throw corrupt("tensor '\(name)' of shape \(shape.map { $0! }) has more elements than can be addressed") }
                count = product
            }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: 4)
            guard !overflow, let begin = offsets[0].integer, let end = offsets[1].integer, begin >= 0, begin <= end, end <= payload,
                  end - begin == bytes else {
                throw corrupt("tensor '\(name)' of shape \(shape.map { $0! }) does not match its byte range \(offsets.map { $0.integer.map(String.init) ?? "?" }) (data is \(payload) bytes)")
            }
            entries.append((name, shape.map { $0! }, begin, end))
        }
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var position = 0
        for entry in entries {
            guard entry.begin == position else {
                throw corrupt(entry.begin < position ? "tensor '\(entry.name)' overlaps the tensor before it (bytes \(entry.begin) ..< \(entry.end))"
                                                     : "bytes \(position) ..< \(entry.begin) belong to no tensor")
            }
            position = entry.end
        }
        guard position == payload else { throw corrupt("bytes \(position) ..< \(payload) after the last tensor belong to no tensor") }
        tensors = try entries.map { entry in
            let bytes = data[(start + entry.begin) ..< (start + entry.end)]
            var scalars = [Float](repeating: 0, count: (entry.end - entry.begin) / 4)
            scalars.withUnsafeMutableBytes { $0.copyBytes(from: bytes) }   // little-endian, as is this machine
            for i in scalars.indices { scalars[i] = Float(bitPattern: UInt32(littleEndian: scalars[i].bitPattern)) }
            return (entry.name, try Tensor(shape: entry.shape, scalars: scalars))
        }
        self.metadata = metadata
    }

    /// Writes the file atomically: to a temporary file beside `url`, flushed to disk, then renamed over it,
    /// so an interrupted write never leaves a truncated checkpoint behind.
    public func write(to url: URL) throws {
        try writeAtomically(encoded(), to: url)
    }

    /// Reads and validates a safetensors file.
    public static func read(from url: URL) throws -> SafeTensors {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw MetaCoreError(.missingData, "no checkpoint at \(url.path)")
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw MetaCoreError(.io, "cannot read \(url.path): \(describe(error))")
        }
        return try SafeTensors(decoding: data, source: url.path)
    }
}
