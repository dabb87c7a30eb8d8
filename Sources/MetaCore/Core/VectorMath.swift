/// The few whole-vector operations meta-learning performs on flat parameter vectors.
extension Array where Element == Float {
    /// self += scale * other.
    @inlinable public mutating func add(_ other: [Float], scaledBy scale: Float = 1) {
        precondition(count == other.count, "vector lengths differ: \(count) and \(other.count)")
        withUnsafeMutableBufferPointer { a in other.withUnsafeBufferPointer { b in
            for i in a.indices { a[i] += scale * b[i] }
        } }
    }

    /// Euclidean norm, accumulated in double.
    public var norm: Double {
        var sum = 0.0
        for x in self { sum += Double(x) * Double(x) }
        return sum.squareRoot()
    }

    /// Multiplies every element by `scale`.
    public mutating func scale(by scale: Float) {
        withUnsafeMutableBufferPointer { a in for i in a.indices { a[i] *= scale } }
    }
}
