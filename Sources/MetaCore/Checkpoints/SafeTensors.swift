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

    /// Parses and validates a safetensors file's bytes; `source` names it in error messages.
    public init(decoding data: Data, source: String) throws {
        func corrupt(_ why: String) -> MetaCoreError { MetaCoreError(.corruptData, "\(source) is not a valid safetensors file: \(why)") }
        guard data.count >= 8 else { throw corrupt("\(data.count) bytes is shorter than the 8-byte header length") }
        let length = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length <= UInt64(data.count - 8) else { throw corrupt("header length \(length) exceeds the file (\(data.count) bytes)") }
        let start = data.startIndex + 8 + Int(length)
        guard let header = try? JSONSerialization.jsonObject(with: data[data.startIndex + 8 ..< start]) as? [String: Any] else {
            throw corrupt("the header is not a JSON object")
        }
        let payload = data.count - 8 - Int(length)
        var tensors: [(name: String, tensor: Tensor, begin: Int)] = []
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: String] else { throw corrupt("__metadata__ must map strings to strings") }
                metadata = m
                continue
            }
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw corrupt("entry '\(name)' lacks dtype, shape or data_offsets")
            }
            guard dtype == "F32" else { throw corrupt("tensor '\(name)' has dtype \(dtype); MetaCore reads F32") }
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[1] <= payload,
                  offsets[1] - offsets[0] == 4 * shape.reduce(1, *) else {
                throw corrupt("tensor '\(name)' of shape \(shape) does not match its byte range \(offsets) (data is \(payload) bytes)")
            }
            let bytes = data[(start + offsets[0]) ..< (start + offsets[1])]
            var scalars = [Float](repeating: 0, count: shape.reduce(1, *))
            scalars.withUnsafeMutableBytes { $0.copyBytes(from: bytes) }   // little-endian, as is this machine
            for i in scalars.indices { scalars[i] = Float(bitPattern: UInt32(littleEndian: scalars[i].bitPattern)) }
            tensors.append((name, try Tensor(shape: shape, scalars: scalars), offsets[0]))
        }
        tensors.sort { $0.begin < $1.begin }
        self.tensors = tensors.map { ($0.name, $0.tensor) }
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
            throw MetaCoreError(.io, "cannot read \(url.path): \(error.localizedDescription)")
        }
        return try SafeTensors(decoding: data, source: url.path)
    }
}
