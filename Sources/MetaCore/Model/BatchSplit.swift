import Dispatch

/// How a layer's pass splits its batch across threads: `parts` contiguous ranges of `size` samples (the last
/// may be shorter), run concurrently.
///
/// This is how a lone task — a large Prototypical Networks episode, a single-task fine-tune — uses several
/// cores; the tasks of a meta-batch run concurrently instead, each pass on one thread. Layers whose samples
/// are independent (convolution, pooling, activations, linear maps) split their samples, and their parameter
/// gradients are summed over the parts in part order, so a fixed thread count gives bit-identical results and
/// different thread counts differ only by floating-point reassociation; BatchNorm, whose samples share the
/// batch statistics, splits its channels instead (the same split over channels, exact for any thread count).
public struct BatchSplit: Sendable, Equatable {
    public let batch: Int, parts: Int, size: Int

    /// Passes that produce fewer values than this run whole: dispatching the parts would cost more than it
    /// saves.
    public static let minimumOutputs = 1 << 16

    /// The split of a pass over `batch` samples of `outputCount` output values each, on up to `threads` threads.
    public init(batch: Int, outputCount: Int, threads: Int) {
        let wanted = threads > 1 && batch * outputCount >= Self.minimumOutputs ? max(1, min(threads, batch)) : 1
        self.batch = batch
        size = max(1, (batch + wanted - 1) / wanted)
        parts = max(1, (batch + size - 1) / size)
    }

    /// The samples of part `index`.
    public func range(_ index: Int) -> Range<Int> { index * size ..< min(batch, (index + 1) * size) }

    /// Runs `body` on the range of every part, concurrently when there are several.
    public func forEach(_ body: (Range<Int>) -> Void) {
        guard parts > 1 else { return body(0 ..< batch) }
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable((body, self))
            DispatchQueue.concurrentPerform(iterations: parts) { k in shared.value.0(shared.value.1.range(k)) }
        }
    }

    /// Scratch floats a split pass needs: `perPart` for each part, and `summing` for each part after the
    /// first (its own copy of the parameter gradient or H·v, added into the layer's slice afterwards).
    public func scratch(perPart: Int, summing: Int = 0) -> Int { parts * perPart + (parts - 1) * summing }
}

extension LayerPass {
    /// How this pass splits its batch (by its size, its outputs and ``threads``).
    public var split: BatchSplit { BatchSplit(batch: batch, outputCount: outputCount, threads: threads) }

    /// Runs `body` on every part of ``split`` — concurrently when there are several — with a pass restricted to
    /// that part's samples, a single thread, and `scratch` floats of scratch of its own.
    ///
    /// With `count` > 0, every part after the first writes its `gradient` and `hv` (`count` floats) to a buffer
    /// of its own, added into `output` (the layer's slice of the gradient or of H·v) in part order once all the
    /// parts are done. A layer that keeps per-sample integers between passes says how many per sample
    /// (`savedIntsPerSample`); split layers must not use `saved` or `rSaved`.
    public func forEachPart(scratch: Int = 0, summing count: Int = 0, into output: UnsafeMutablePointer<Float>? = nil,
                            savedIntsPerSample: Int = 0, _ body: (LayerPass) -> Void) {
        let split = self.split
        guard split.parts > 1 else { return body(self) }
        let partials = self.scratch + split.parts * scratch
        split.forEach { range in
            let k = range.lowerBound / split.size
            body(part(range, scratch: self.scratch + k * scratch,
                      parameterOutput: k > 0 && count > 0 ? partials + (k - 1) * count : nil, savedIntsPerSample: savedIntsPerSample))
        }
        guard count > 0, let output else { return }
        for k in 1 ..< split.parts {
            let partial = partials + (k - 1) * count
            for i in 0 ..< count { output[i] += partial[i] }
        }
    }

    /// This pass restricted to the samples `range`, on one thread.
    private func part(_ range: Range<Int>, scratch: UnsafeMutablePointer<Float>, parameterOutput: UnsafeMutablePointer<Float>?,
                      savedIntsPerSample: Int) -> LayerPass {
        let i = range.lowerBound * inputCount, o = range.lowerBound * outputCount
        return LayerPass(
            batch: range.count, inputShape: inputShape, outputShape: outputShape, normalization: normalization, threads: 1,
            x: x + i, y: y + o, theta: theta, state: state, saved: saved,
            savedInts: savedInts + range.lowerBound * savedIntsPerSample, rSaved: rSaved, scratch: scratch,
            dy: dy + o, dx: dx.map { $0 + i }, gradient: parameterOutput ?? gradient,
            v: v, Rx: Rx.map { $0 + i }, Ry: Ry + o, Rdy: Rdy + o, Rdx: Rdx.map { $0 + i }, hv: parameterOutput ?? hv)
    }
}
