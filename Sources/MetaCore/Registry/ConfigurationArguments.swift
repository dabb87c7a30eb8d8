/// A run's configuration as `--key value` arguments: the settings every run has (`--algorithm`, `--shots`,
/// `--meta-lr`, …) and the options of the components it names (`--channels`, `--split`, …). One table serves the
/// command line, configuration files (whose keys are these names) and `--print-config`, so the three accept
/// and write exactly the same things.
extension TrainingConfiguration {
    /// One setting every run has: its argument name, help, and how it reads and writes the field.
    public struct Setting: Sendable {
        public let name: String
        public let help: String
        let get: @Sendable (TrainingConfiguration) -> String?
        let set: @Sendable (inout TrainingConfiguration, String) throws -> Void
        /// What is wrong with the value, if anything.
        let problem: @Sendable (TrainingConfiguration) -> String?
    }

    /// A whole number's bounds: sizes beyond them would not fit in memory or would overflow the arithmetic.
    private static func within<T: Comparable & Sendable>(_ range: ClosedRange<T>) -> @Sendable (T) -> String? {
        { range.contains($0) ? nil : "must be between \(range.lowerBound) and \(range.upperBound)" }
    }
    private static let positive: @Sendable (Float) -> String? = { $0 > 0 && $0.isFinite ? nil : "must be a positive number" }

    private static func parse<T: LosslessStringConvertible>(_ text: String, _ name: String, _ what: String) throws -> T {
        guard let value = T(text.trimmingCharacters(in: .whitespaces)) else {
            throw MetaCoreError.argument("'\(text)' is not a valid value for \(name): expected \(what)")
        }
        return value
    }

    private static func setting<T: LosslessStringConvertible & Sendable>(
        _ name: String, _ path: WritableKeyPath<TrainingConfiguration, T> & Sendable, _ what: String, _ help: String,
        _ check: @escaping @Sendable (T) -> String? = { _ in nil }) -> Setting {
        Setting(name: name, help: help, get: { String($0[keyPath: path]) }, set: { $0[keyPath: path] = try parse($1, name, what) },
                problem: { check($0[keyPath: path]) })
    }

    private static func setting<T: LosslessStringConvertible & Sendable>(
        _ name: String, _ path: WritableKeyPath<TrainingConfiguration, T?> & Sendable, _ what: String, _ help: String,
        _ check: @escaping @Sendable (T) -> String? = { _ in nil }) -> Setting {
        Setting(name: name, help: help, get: { $0[keyPath: path].map(String.init) },
                set: { $0[keyPath: path] = try parse($1, name, what) as T }, problem: { $0[keyPath: path].flatMap(check) })
    }

    /// The settings every run has, in the order help and `--print-config` list them.
    public static let settings: [Setting] = [
        setting("algorithm", \.algorithm, "a name", "the meta-learning algorithm (see below)"),
        setting("task", \.task, "a name", "the task family (see below)"),
        setting("backbone", \.backbone, "a name", "the network (default: the task family's)"),
        setting("ways", \.ways, "an integer", "classes per episode (omniglot); classes per trajectory; functions (incremental-sine)",
                within(1 ... 100_000)),
        setting("shots", \.shots, "an integer", "support examples per task (per class for classification)", within(1 ... 100_000)),
        setting("queries", \.queries, "an integer", "query examples per task (per class for classification)", within(0 ... 100_000)),
        setting("inner-steps", \.innerSteps, "an integer", "inner SGD steps during meta-training", within(0 ... 10_000)),
        setting("inner-lr", \.innerLearningRate, "a number", "inner learning rate (OML: the online SGD step on the prediction network)",
                positive),
        setting("meta-optimizer", \.metaOptimizer, "a name", "the meta-optimiser (see below)"),
        setting("meta-lr", \.metaLearningRate, "a number", "meta learning rate", positive),
        setting("meta-batch", \.metaBatch, "an integer", "tasks per meta-batch", within(1 ... 100_000)),
        setting("clip", \.clip, "a number", "clip the meta-gradient to this norm", positive),
        setting("clip-value", \.clipValue, "a number", "clamp each entry of the meta-gradient to ±this (before --clip)", positive),
        setting("iterations", \.iterations, "an integer", "meta-iterations in total", within(0 ... 1_000_000_000_000)),
        setting("seed", \.seed, "a non-negative integer", "random seed (initialisation and tasks)"),
    ]

    /// The configuration as `(name, value)` pairs: every setting that has a value, then every component
    /// option set in ``options``, by name. ``applying(_:source:origin:)`` reads them back to an equal configuration.
    public var arguments: [(name: String, value: String)] {
        Self.settings.compactMap { s in s.get(self).map { (s.name, $0) } }
            + options.sorted { $0.key < $1.key }.map { ($0.key, $0.value.description) }
    }

    /// The names this configuration's ``arguments`` whose values differ from `other`'s.
    public func differences(from other: TrainingConfiguration) -> [String] {
        let mine = Dictionary(arguments, uniquingKeysWith: { a, _ in a }), theirs = Dictionary(other.arguments, uniquingKeysWith: { a, _ in a })
        return Set(mine.keys).union(theirs.keys).filter { mine[$0] != theirs[$0] }.sorted()
    }

    /// This configuration with `arguments` applied in order (a later one wins): `--name value`, `--name=value`,
    /// or for a true/false option `--name`, `--no-name`. A name is a setting or an option of any registered
    /// component; component options are checked against the components this configuration ends up naming.
    /// `source` says where the arguments come from in error messages; `origin` can name a different source
    /// for some names (a configuration file's keys).
    public func applying(_ arguments: [String], source: String = "command line",
                         origin: [String: String] = [:]) throws -> TrainingConfiguration {
        var config = self
        let settings = Dictionary(Self.settings.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let components = Dictionary(Registry.allOptions.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var i = 0
        while i < arguments.count {
            let word = arguments[i]
            i += 1
            guard word.hasPrefix("--"), word.count > 2 else {
                throw MetaCoreError.argument("\(source): unexpected argument '\(word)' (options are --name value)")
            }
            var name = String(word.dropFirst(2)), value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            let from = origin[name] ?? source
            if settings[name] == nil, components[name] == nil, value == nil, name.hasPrefix("no-"),
               components[String(name.dropFirst(3))]?.kind == .bool {
                config.options[String(name.dropFirst(3))] = .bool(false)
                continue
            }
            if let setting = settings[name] {
                guard let text = value ?? (i < arguments.count ? arguments[i] : nil) else {
                    throw MetaCoreError.argument("\(from): --\(name) needs a value")
                }
                if value == nil { i += 1 }
                do { try setting.set(&config, text) } catch let error as MetaCoreError { throw MetaCoreError(error.kind, "\(from): \(error.message)") }
            } else if let spec = components[name] {
                if spec.kind == .bool && value == nil {
                    // A bare flag is true; a following true/false word is its value.
                    if i < arguments.count, let parsed = try? spec.parse(arguments[i], source: from) { config.options[name] = parsed; i += 1 }
                    else { config.options[name] = .bool(true) }
                    continue
                }
                guard let text = value ?? (i < arguments.count ? arguments[i] : nil) else {
                    throw MetaCoreError.argument("\(from): --\(name) needs a value (\(spec.valueHint))")
                }
                if value == nil { i += 1 }
                config.options[name] = try spec.parse(text, source: from)
            } else {
                throw MetaCoreError(.unknownName, "\(from): unknown option --\(name); the configuration takes \(Self.settings.map { "--\($0.name)" }.joined(separator: ", ")) and the components' options \(components.keys.sorted().map { "--\($0)" }.joined(separator: ", "))")
            }
        }
        try config.validate(source: source)
        return config
    }

    /// Throws naming the first setting out of its bounds, or an option that does not apply or is out of range:
    /// what a configuration from the command line, a file or a checkpoint must pass before it is used.
    public func validate(source: String = "configuration") throws {
        for setting in Self.settings {
            if let problem = setting.problem(self) {
                throw MetaCoreError.argument("\(source): \(setting.name) \(problem), got \(setting.get(self) ?? "nothing")")
            }
        }
        if ways != nil, try !components().taskFamily.takesWays {
            throw MetaCoreError.argument("\(source): \(task) tasks have no ways (classes per episode); leave --ways out")
        }
        _ = try resolvedOptions()
    }

    /// Help on the configuration: the settings, then every registered component with its options.
    public static var help: String {
        func options(_ specs: [OptionSpec]) -> [String] {
            specs.map { "      --\($0.name) <\($0.valueHint)>  \($0.help)" + ($0.defaultValue.map { " (default \($0))" } ?? "") }
        }
        func section(_ title: String, _ entries: [any Component]) -> [String] {
            ["", title] + entries.flatMap { ["  \($0.name): \($0.summary)"] + options($0.options) }
        }
        let defaults = TrainingConfiguration()
        var lines = ["CONFIGURATION (command line, or keys of a --config file; the command line wins)"]
        lines += settings.map { "  --\($0.name)  \($0.help)" + ($0.get(defaults).map { " (default \($0))" } ?? "") }
        lines += section("ALGORITHMS (--algorithm)", Registry.algorithms)
        lines += section("TASK FAMILIES (--task)", Registry.taskFamilies)
        lines += section("BACKBONES (--backbone)", Registry.backbones)
        lines += section("META-OPTIMIZERS (--meta-optimizer)", Registry.optimizers)
        return lines.joined(separator: "\n")
    }
}
