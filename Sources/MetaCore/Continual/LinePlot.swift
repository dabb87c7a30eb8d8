import Foundation

/// A line chart as a self-contained SVG document: one polyline with markers per series, axes with ticks,
/// a legend. Enough to look at learning curves (accuracy versus classes learned) without a plotting stack.
public struct LinePlot: Sendable {
    public struct Series: Sendable {
        public let label: String
        public let points: [(x: Double, y: Double)]
        public init(label: String, points: [(x: Double, y: Double)]) { self.label = label; self.points = points }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    /// The y range drawn; `nil` fits the data.
    public var yRange: ClosedRange<Double>?

    public init(title: String, xLabel: String, yLabel: String, series: [Series], yRange: ClosedRange<Double>? = nil) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series; self.yRange = yRange
    }

    private static let colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

    /// The SVG text, with a plotting area of `plotWidth` x `plotHeight` pixels and the legend to its right. Throws if
    /// there is nothing to draw.
    public func svg(plotWidth: Double = 460, plotHeight: Double = 330) throws -> String {
        let all = series.flatMap(\.points)
        guard !all.isEmpty, all.allSatisfy({ $0.x.isFinite && $0.y.isFinite }) else {
            throw MetaCoreError.argument("a plot needs at least one finite point")
        }
        // The axes' spans must be finite too (±1e308 points overflow them).
        let limit = 1e300
        guard all.allSatisfy({ abs($0.x) <= limit && abs($0.y) <= limit }), (yRange.map { abs($0.lowerBound) <= limit && abs($0.upperBound) <= limit } ?? true) else {
            throw MetaCoreError.argument("a plot's values must lie within ±1e300")
        }
        let longest = series.map(\.label.count).max() ?? 0
        let left = 64.0, right = 50 + 7 * Double(longest), top = 40.0, bottom = 52.0
        let width = left + plotWidth + right, height = top + plotHeight + bottom
        let xs = Self.niceRange(all.map(\.x).min()! ... all.map(\.x).max()!)
        let ys = yRange.map { (range: $0, step: Self.niceStep(($0.upperBound - $0.lowerBound) / 5)) } ?? Self.niceRange(all.map(\.y).min()! ... all.map(\.y).max()!)
        func px(_ x: Double) -> Double { left + (x - xs.range.lowerBound) / (xs.range.upperBound - xs.range.lowerBound) * plotWidth }
        func py(_ y: Double) -> Double { top + plotHeight - (y - ys.range.lowerBound) / (ys.range.upperBound - ys.range.lowerBound) * plotHeight }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func label(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%g", v) }
        var out = [
            ##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(f(width))" height="\##(f(height))" viewBox="0 0 \##(f(width)) \##(f(height))" font-family="sans-serif" font-size="12">"##,
            ##"<rect width="100%" height="100%" fill="white"/>"##,
            ##"<text x="\##(f(left + plotWidth / 2))" y="22" text-anchor="middle" font-size="14">\##(Self.escape(title))</text>"##,
        ]
        for tick in stride(from: ys.range.lowerBound, through: ys.range.upperBound + ys.step / 2, by: ys.step) {
            out.append(##"<line x1="\##(f(left))" x2="\##(f(left + plotWidth))" y1="\##(f(py(tick)))" y2="\##(f(py(tick)))" stroke="#e0e0e0"/>"##)
            out.append(##"<text x="\##(f(left - 6))" y="\##(f(py(tick) + 4))" text-anchor="end">\##(label(tick))</text>"##)
        }
        for tick in stride(from: xs.range.lowerBound, through: xs.range.upperBound + xs.step / 2, by: xs.step) {
            out.append(##"<line x1="\##(f(px(tick)))" x2="\##(f(px(tick)))" y1="\##(f(top + plotHeight))" y2="\##(f(top + plotHeight + 5))" stroke="black"/>"##)
            out.append(##"<text x="\##(f(px(tick)))" y="\##(f(top + plotHeight + 18))" text-anchor="middle">\##(label(tick))</text>"##)
        }
        out.append(##"<rect x="\##(f(left))" y="\##(f(top))" width="\##(f(plotWidth))" height="\##(f(plotHeight))" fill="none" stroke="black"/>"##)
        out.append(##"<text x="\##(f(left + plotWidth / 2))" y="\##(f(height - 12))" text-anchor="middle">\##(Self.escape(xLabel))</text>"##)
        out.append(##"<text transform="translate(16 \##(f(top + plotHeight / 2))) rotate(-90)" text-anchor="middle">\##(Self.escape(yLabel))</text>"##)
        for (index, s) in series.enumerated() {
            let colour = Self.colours[index % Self.colours.count]
            let points = s.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            out.append(##"<polyline points="\##(points)" fill="none" stroke="\##(colour)" stroke-width="2"/>"##)
            for p in s.points { out.append(##"<circle cx="\##(f(px(p.x)))" cy="\##(f(py(p.y)))" r="3" fill="\##(colour)"/>"##) }
            let y = top + 12 + Double(index) * 18
            out.append(##"<line x1="\##(f(left + plotWidth + 12))" x2="\##(f(left + plotWidth + 32))" y1="\##(f(y - 4))" y2="\##(f(y - 4))" stroke="\##(colour)" stroke-width="2"/>"##)
            out.append(##"<text x="\##(f(left + plotWidth + 38))" y="\##(f(y))">\##(Self.escape(s.label))</text>"##)
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// A range covering `data` with round ends, and its tick step (about five ticks).
    static func niceRange(_ data: ClosedRange<Double>) -> (range: ClosedRange<Double>, step: Double) {
        let span = data.upperBound - data.lowerBound
        let step = niceStep(span > 0 ? span / 5 : max(abs(data.lowerBound), 1) / 5)
        let low = (data.lowerBound / step).rounded(.down) * step, high = (data.upperBound / step).rounded(.up) * step
        return (low ... (high > low ? high : low + step), step)
    }

    /// 1, 2 or 5 times a power of ten, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        let power = pow(10, (log10(raw)).rounded(.down))
        return [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
