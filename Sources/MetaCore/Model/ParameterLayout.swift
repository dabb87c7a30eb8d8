/// Where each named parameter tensor lives inside a model's one flat parameter vector.
///
/// Meta-learning adds, scales and differences whole parameter vectors all the time, so a model's parameters
/// are a single `[Float]`; the layout gives the named, shaped views into it (names follow PyTorch's
/// `nn.Sequential` convention: `"<layer index>.<name>"`, e.g. `"0.weight"`).
public struct ParameterLayout: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        /// The index of the layer the tensor belongs to.
        public let layer: Int
        public var count: Int { shape.reduce(1, *) }
        public var range: Range<Int> { offset ..< offset + count }
    }

    public let entries: [Entry]
    /// Length of the flat vector.
    public let count: Int
    /// The slice of the flat vector that belongs to each layer (empty for layers without tensors).
    public let layerRanges: [Range<Int>]

    init(layers: [[(name: String, shape: [Int])]]) {
        var entries: [Entry] = [], layerRanges: [Range<Int>] = []
        var offset = 0
        for (index, tensors) in layers.enumerated() {
            let start = offset
            for tensor in tensors {
                entries.append(Entry(name: "\(index).\(tensor.name)", shape: tensor.shape, offset: offset, layer: index))
                offset += tensor.shape.reduce(1, *)
            }
            layerRanges.append(start ..< offset)
        }
        self.entries = entries
        self.count = offset
        self.layerRanges = layerRanges
    }

    /// The entry with this name; throws `unknownName` listing the names that exist.
    public func entry(named name: String) throws -> Entry {
        guard let entry = entries.first(where: { $0.name == name }) else {
            throw MetaCoreError(.unknownName, "no parameter named '\(name)'; the model has \(entries.map(\.name).joined(separator: ", "))")
        }
        return entry
    }

    /// The named tensor, copied out of a flat vector laid out by this layout.
    public func tensor(named name: String, in parameters: [Float]) throws -> Tensor {
        let entry = try entry(named: name)
        try check(parameters, "parameter vector")
        return try Tensor(shape: entry.shape, scalars: Array(parameters[entry.range]))
    }

    /// Throws unless `vector` has this layout's length.
    public func check(_ vector: [Float], _ what: String) throws {
        guard vector.count == count else {
            throw MetaCoreError.shape("\(what) has \(vector.count) entries; the model has \(count) parameters")
        }
    }
}
