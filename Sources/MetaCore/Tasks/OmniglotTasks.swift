/// N-way K-shot few-shot classification episodes from Omniglot characters (Vinyals et al. 2016).
///
/// A class is a character at one rotation: with `rotations: [0, 1, 2, 3]` each character gives four classes
/// (0°, 90°, 180°, 270°), the augmentation of the few-shot literature. An episode draws `ways` distinct classes
/// (of any alphabets, or of one: ``Episodes``) and, for each, `shots + queries` distinct drawings; class `j` of the episode gets label `j`, so labels follow
/// the random order the classes were drawn in. Support and query sets are class-major, inputs `[1, side, side]`
/// in [0, 1] with ink 1. Sampling is a pure function of the random source.
public struct OmniglotTasks: TaskDistribution {
    /// A character at a rotation of `quarterTurns` × 90° counter-clockwise.
    public struct ImageClass: Sendable, Hashable {
        public let character: Int
        public let quarterTurns: Int
    }

    /// Which classes an episode may draw together.
    public enum Episodes: String, Sendable, CaseIterable {
        /// Any `ways` classes (Vinyals et al. 2016's episodes).
        case any
        /// `ways` classes of one alphabet, the alphabet drawn uniformly among those with that many classes:
        /// Lake et al. 2015's within-alphabet one-shot task, whose characters look alike.
        case withinAlphabet = "within-alphabet"
    }

    public let dataset: Omniglot
    public let classes: [ImageClass]
    public let ways: Int
    public let shots: Int
    /// Query drawings per class.
    public let queries: Int
    public let episodes: Episodes
    /// Within-alphabet episodes: for every alphabet with at least `ways` classes, its indices into `classes`.
    let alphabets: [[Int]]

    /// - Parameters:
    ///   - dataset: the loaded Omniglot images.
    ///   - characters: indices into `dataset.characters` (e.g. one side of ``Omniglot/split(trainCount:seed:)``).
    ///   - rotations: quarter turns applied to every character, each a class of its own.
    ///   - ways: classes per episode.
    ///   - shots: support drawings per class.
    ///   - queries: query drawings per class (`shots + queries` must not exceed 20).
    ///   - episodes: whether an episode's classes come from any alphabets or from one.
    public init(_ dataset: Omniglot, characters: [Int], rotations: [Int] = [0], ways: Int, shots: Int, queries: Int,
                episodes: Episodes = .any) throws {
        guard ways >= 2 else { throw MetaCoreError.argument("an episode needs at least 2 ways (classes), got \(ways)") }
        guard shots >= 1, queries >= 1 else {
            throw MetaCoreError.argument("an episode needs at least 1 shot and 1 query per class, got \(shots) and \(queries)")
        }
        guard !rotations.isEmpty, rotations.allSatisfy({ (0 ... 3).contains($0) }), Set(rotations).count == rotations.count else {
            throw MetaCoreError.argument("rotations are distinct quarter turns in 0...3, got \(rotations)")
        }
        if let bad = characters.first(where: { !dataset.characters.indices.contains($0) }) {
            throw MetaCoreError.argument("character index \(bad) is outside the dataset's \(dataset.characters.count) characters")
        }
        guard Set(characters).count == characters.count else { throw MetaCoreError.argument("the character list repeats a character") }
        let classes = characters.flatMap { c in rotations.map { ImageClass(character: c, quarterTurns: $0) } }
        guard ways <= classes.count else {
            throw MetaCoreError.argument("\(ways)-way episodes need \(ways) classes; \(characters.count) characters x \(rotations.count) rotations give \(classes.count)")
        }
        try Self.checkDrawings(shots: shots, queries: queries)
        var alphabets: [[Int]] = []
        if episodes == .withinAlphabet {
            let grouped = Dictionary(grouping: classes.indices) { i in
                let character = dataset.characters[classes[i].character]
                return "\(character.part.rawValue)/\(character.alphabet)"
            }
            alphabets = grouped.keys.sorted().map { grouped[$0]! }.filter { $0.count >= ways }
            guard !alphabets.isEmpty else {
                throw MetaCoreError.argument("within-alphabet \(ways)-way episodes need an alphabet with \(ways) classes; the largest here has \(grouped.values.map(\.count).max() ?? 0)")
            }
        }
        self.dataset = dataset; self.classes = classes
        self.ways = ways; self.shots = shots; self.queries = queries
        self.episodes = episodes; self.alphabets = alphabets
    }

    private static func checkDrawings(shots: Int, queries: Int) throws {
        guard shots + queries <= Omniglot.drawingsPerCharacter else {
            throw MetaCoreError.argument("\(shots) shots + \(queries) queries per class exceed the \(Omniglot.drawingsPerCharacter) drawings of an Omniglot character")
        }
    }

    /// Every class's name, `part/alphabet/character` with the rotation when it is not 0° (`… @90`).
    public var classNames: [String] {
        classes.map { dataset.characters[$0.character].path + ($0.quarterTurns == 0 ? "" : " @\($0.quarterTurns * 90)") }
    }

    public var inputShape: [Int] { [1, dataset.side, dataset.side] }
    public var outputShape: [Int] { [ways] }
    public var isClassification: Bool { true }

    /// An episode; `queryCount` overrides the query drawings *per class*.
    public func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
        let queries = queryCount ?? self.queries
        guard queries >= 1 else { throw MetaCoreError.argument("an episode needs at least 1 query per class, got \(queries)") }
        try Self.checkDrawings(shots: shots, queries: queries)
        let chosen: [Int]
        switch episodes {
        case .any: chosen = Self.choose(ways, from: classes.count, using: &random)
        case .withinAlphabet:
            let alphabet = alphabets[Int(random.next() % UInt64(alphabets.count))]
            chosen = Self.choose(ways, from: alphabet.count, using: &random).map { alphabet[$0] }
        }
        let picked = chosen.map { _ in Self.choose(shots + queries, from: Omniglot.drawingsPerCharacter, using: &random) }
        func batch(_ range: Range<Int>) throws -> Batch {
            var drawings: [Omniglot.Drawing] = [], labels: [Int32] = []
            for (label, c) in chosen.enumerated() {
                for d in picked[label][range] {
                    drawings.append(Omniglot.Drawing(character: classes[c].character, drawing: d, quarterTurns: classes[c].quarterTurns))
                    labels.append(Int32(label))
                }
            }
            return try dataset.batch(drawings, labels: labels)
        }
        return Task(support: try batch(0 ..< shots), query: try batch(shots ..< shots + queries))
    }

    /// `k` distinct indices from `0 ..< n` in random order (a partial Fisher–Yates shuffle).
    static func choose(_ k: Int, from n: Int, using random: inout RandomSource) -> [Int] {
        var pool = Array(0 ..< n)
        for i in 0 ..< k { pool.swapAt(i, i + Int(random.next() % UInt64(n - i))) }
        return Array(pool[..<k])
    }
}

extension OmniglotTasks {
    /// Which characters meta-train and which meta-test.
    public enum Split: String, Sendable, CaseIterable {
        /// Vinyals et al. 2016 and Finn et al. 2017: 1200 of the 1623 characters, shuffled with seed 0, for
        /// meta-training and the other 423 for meta-testing.
        case vinyals
        /// Lake et al. 2015: the 964 characters of the 30 background alphabets for meta-training, the 659 of the
        /// 20 evaluation alphabets for meta-testing.
        case lake

        /// The (meta-training, meta-test) characters of `dataset`.
        public func characters(of dataset: Omniglot) throws -> (train: [Int], test: [Int]) {
            switch self {
            case .vinyals: return try dataset.split(seed: 0)
            case .lake: return (dataset.characters(in: .background), dataset.characters(in: .evaluation))
            }
        }
    }

    /// Meta-training classes are every training character at 0°, 90°, 180° and 270°; test classes are upright.
    public static let trainRotations = [0, 1, 2, 3]

    static let registrations = [
        TaskFamilyEntry(name: "omniglot", summary: "N-way K-shot episodes of Omniglot characters",
                        options: [OptionSpec("split", .choice(Split.allCases.map(\.rawValue)), default: .string("vinyals"),
                                             help: "character split: vinyals (random 1200/423) or lake (background/evaluation alphabets)"),
                                  OptionSpec("episodes", .choice(Episodes.allCases.map(\.rawValue)), default: .string("any"),
                                             evaluationMayChange: true,
                                             help: "an episode's classes: any, or all of one alphabet (Lake et al.'s within-alphabet task)"),
                                  Omniglot.imageSizeOption],
                        dataset: Omniglot.self, defaultBackbone: "conv4", evaluationQueries: 15) { request in
            let dataset = try request.data.load(Omniglot.self, for: request.options), config = request.configuration
            let characters = try Split(rawValue: request.options.string("split")!)!.characters(of: dataset)
            return try OmniglotTasks(dataset, characters: request.split == .train ? characters.train : characters.test,
                                     rotations: request.split == .train ? trainRotations : [0],
                                     ways: request.ways(), shots: config.shots, queries: config.queries,
                                     episodes: Episodes(rawValue: request.options.string("episodes")!)!)
        },
    ]
}
