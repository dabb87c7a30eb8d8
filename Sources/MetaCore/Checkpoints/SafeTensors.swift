import Foundation

/// Named float32 tensors and string metadata in the safetensors format (the one PyTorch's and JAX's users
/// read with `safetensors.torch.load_file` / `safetensors.numpy.load_file`):
/// an 8-byte little-endian header length N, N bytes of JSON
/// `{"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}`,
/// then the tensors' little-endian bytes.
///
/// Files are written in F32. Reading takes every dtype of the format: F64, F16, BF16 and the 8-bit floats
/// (F8_E4M3, F8_E5M2) are converted to float32 (``converted``); integer and boolean tensors — batch-norm's
/// `num_batches_tracked` in a PyTorch `state_dict` — are set aside (``skipped``), since MetaCore's tensors are
/// floats.
public struct SafeTensors: Sendable {
    public var tensors: [(name: String, tensor: Tensor)]
    public var metadata: [String: String]
    /// The tensors read from another floating-point dtype than F32, with it.
    public var converted: [(name: String, dtype: String)] = []
    /// The integer and boolean tensors of the file, not read: name, dtype and shape.
    public var skipped: [(name: String, dtype: String, shape: [Int])] = []

    /// What reading changed, for a message: the dtypes converted and the tensors set aside (`nil` if nothing).
    public var readingSummary: String? {
        var parts: [String] = []
        let byType = Dictionary(grouping: converted, by: \.dtype)
        if !byType.isEmpty {
            parts.append("converted to float32: " + byType.keys.sorted().map { "\(byType[$0]!.count) \($0) tensor\(byType[$0]!.count == 1 ? "" : "s")" }.joined(separator: ", "))
        }
        if !skipped.isEmpty {
            let names = skipped.prefix(4).map { "\($0.name) (\($0.dtype))" }.joined(separator: ", ")
            parts.append("ignored \(skipped.count) integer tensor\(skipped.count == 1 ? "" : "s"): \(names)\(skipped.count > 4 ? ", ..." : "")")
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    /// A tensor element type of the format: its size in bytes, and how it becomes a float.
    enum DType: String, CaseIterable {
        case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
        case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8", bool = "BOOL"

        var size: Int {
            switch self {
            case .f64, .i64, .u64: 8
            case .f32, .i32, .u32: 4
            case .f16, .bf16, .i16, .u16: 2
            case .f8e4m3, .f8e5m2, .i8, .u8, .bool: 1
            }
        }

        var isFloat: Bool { [.f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2].contains(self) }

        /// Element `i` of little-endian `bytes` of this floating-point type, as a float.
        func float(_ bytes: UnsafeRawBufferPointer, _ i: Int) -> Float {
            func bits<T: FixedWidthInteger>(_: T.Type) -> T { T(littleEndian: bytes.loadUnaligned(fromByteOffset: i * size, as: T.self)) }
            switch self {
            case .f32: return Float(bitPattern: bits(UInt32.self))
            case .f64: return Float(Double(bitPattern: bits(UInt64.self)))
            case .bf16: return Float(bitPattern: UInt32(bits(UInt16.self)) << 16)
            case .f16: return Self.half(bits(UInt16.self))
            case .f8e5m2: return Self.half(UInt16(bytes[i]) << 8)   // the top byte of a binary16
            case .f8e4m3: return Self.e4m3(bytes[i])
            default: preconditionFailure("\(rawValue) is not a floating-point type")
            }
        }

        /// IEEE binary16 bits as a float (subnormals, infinities and NaNs included).
        static func half(_ h: UInt16) -> Float {
            let sign: Float = h & 0x8000 != 0 ? -1 : 1, exponent = Int(h >> 10 & 0x1F), fraction = Float(h & 0x3FF)
            switch exponent {
            case 0: return sign * fraction * 0x1p-24
            case 31: return fraction == 0 ? sign * .infinity : .nan
            default: return sign * (1 + fraction / 1024) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
            }
        }

        /// OCP 8-bit E4M3 ("fn": no infinities; S.1111.111 is NaN) as a float.
        static func e4m3(_ b: UInt8) -> Float {
            let sign: Float = b & 0x80 != 0 ? -1 : 1, exponent = Int(b >> 3 & 0xF), fraction = Float(b & 0x7)
            if exponent == 15 && fraction == 7 { return .nan }
            if exponent == 0 { return sign * fraction * 0x1p-9 }
            return sign * (1 + fraction / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
        }
    }

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
        var entries: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int)] = []
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
            guard let type = DType(rawValue: dtype) else {
                throw corrupt("tensor '\(name)' has dtype \(dtype), which is not one of the format's (\(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let shape = dimensions.map(\.integer)
            guard shape.allSatisfy({ ($0 ?? -1) >= 0 }) else { throw corrupt("tensor '\(name)' has a shape that is not a list of non-negative whole numbers") }
            var count = 1
            for dimension in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: dimension!)
                guard !overflow else { throw corrupt("tensor '\(name)' of shape \(shape.map { $0! }) has more elements than can be addressed") }
                count = product
            }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: type.size)
            guard !overflow, let begin = offsets[0].integer, let end = offsets[1].integer, begin >= 0, begin <= end, end <= payload,
                  end - begin == bytes else {
                throw corrupt("tensor '\(name)' of shape \(shape.map { $0! }) does not match its byte range \(offsets.map { $0.integer.map(String.init) ?? "?" }) (data is \(payload) bytes)")
            }
            entries.append((name, type, shape.map { $0! }, begin, end))
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
        tensors = []
        for entry in entries {
            guard entry.dtype.isFloat else {
                skipped.append((entry.name, entry.dtype.rawValue, entry.shape))
                continue
            }
            if entry.dtype != .f32 { converted.append((entry.name, entry.dtype.rawValue)) }
            let bytes = data[(start + entry.begin) ..< (start + entry.end)]
            var scalars = [Float](repeating: 0, count: (entry.end - entry.begin) / entry.dtype.size)
            if entry.dtype == .f32 {
                scalars.withUnsafeMutableBytes { $0.copyBytes(from: bytes) }   // little-endian, as is this machine
                for i in scalars.indices { scalars[i] = Float(bitPattern: UInt32(littleEndian: scalars[i].bitPattern)) }
            } else {
                bytes.withUnsafeBytes { raw in for i in scalars.indices { scalars[i] = entry.dtype.float(raw, i) } }
            }
            tensors.append((entry.name, try Tensor(shape: entry.shape, scalars: scalars)))
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
