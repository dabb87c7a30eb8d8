/// A description of a model as a graph of operations, built value by value and turned into a ``Model`` by
/// ``Model/init(_:output:)``, which checks it whole.
///
/// Each node applies a ``Layer`` to one value, or an ``Operation`` to several, and yields a new value. A value
/// may feed any number of nodes (its gradient and R-derivative are summed over them); a node may be *tied* to
/// an earlier one, using that node's parameters instead of its own (an unrolled recurrence applies one cell at
/// every step; the gradient and H·v add up over the uses). A graph may have several inputs.
///
/// ```swift
/// let graph = Graph()
/// let x = graph.input([64, 14, 14])
/// let branch = graph.chain([try Conv2d(64, 64, padding: 1), try BatchNorm(64), try LeakyReLU(slope: 0.1),
///                           try Conv2d(64, 64, padding: 1), try BatchNorm(64)], from: x)
/// let block = graph.apply(try LeakyReLU(slope: 0.1), to: graph.sum(branch, x))   // a residual block
/// let model = try Model(graph, output: block)
/// ```
///
/// A graph is a builder object (a class): the model is made from what it holds when ``Model/init(_:output:)``
/// is called, so `try Model(graph, output: graph.apply(head, to: features))` includes the head.
///
/// The builder never fails: every check (an unknown value, a cycle, shapes that do not meet, an input or a
/// value never used, a tied node whose parameters differ) is made by ``Model/init(_:output:)``, whose error
/// names the nodes involved. Values are names, so nodes may also be declared in any order with
/// ``declare(_:_:inputs:tiedTo:)``; the model orders them.
public final class Graph {
    /// A value of the graph: an input or a node's output, named by the input or node.
    public struct Value: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }
    }

    struct Declaration: Sendable {
        let name: String, step: Model.Step, inputs: [String], tiedTo: String?
    }

    private(set) var inputs: [(name: String, shape: [Int])] = []
    private(set) var declarations: [Declaration] = []

    public init() {}

    /// A new input of per-sample shape `shape`. A model with several inputs takes them packed per sample, in the
    /// order they were declared (see ``Model/inputShapes``).
    public func input(_ shape: [Int], name: String? = nil) -> Value {
        let name = name ?? "input\(inputs.count == 0 ? "" : "\(inputs.count)")"
        inputs.append((name, shape))
        return Value(name)
    }

    /// Declares a node named `name` that runs `step` on `inputs` (values named by inputs or other nodes,
    /// declared before or after), optionally with the parameters of the node `tiedTo`.
    @discardableResult
    public func declare(_ name: String, _ step: Model.Step, inputs: [Value], tiedTo: Value? = nil) -> Value {
        declarations.append(Declaration(name: name, step: step, inputs: inputs.map(\.name), tiedTo: tiedTo?.name))
        return Value(name)
    }

    private func automaticName(_ type: Any.Type) -> String { "\(type)#\(declarations.count)" }

    /// `layer` applied to `input`; with `tiedTo`, using the parameters of the node that produced that value.
    @discardableResult
    public func apply(_ layer: any Layer, to input: Value, name: String? = nil, tiedTo: Value? = nil) -> Value {
        declare(name ?? automaticName(type(of: layer)), .layer(layer), inputs: [input], tiedTo: tiedTo)
    }

    /// `operation` applied to `inputs`, in order.
    @discardableResult
    public func apply(_ operation: any Operation, to inputs: [Value], name: String? = nil, tiedTo: Value? = nil) -> Value {
        declare(name ?? automaticName(type(of: operation)), .operation(operation), inputs: inputs, tiedTo: tiedTo)
    }

    /// `layers` applied one after the other, starting from `input`.
    public func chain(_ layers: [any Layer], from input: Value) -> Value {
        layers.reduce(input) { value, layer in apply(layer, to: value) }
    }

    /// The elementwise sum of values of one shape.
    public func sum(_ values: Value...) -> Value {
        apply(try! WeightedSum([Float](repeating: 1, count: values.count)), to: values)
    }

    /// a − b.
    public func difference(_ a: Value, _ b: Value) -> Value { apply(try! WeightedSum([1, -1]), to: [a, b]) }

    /// The elementwise product a ⊙ b.
    public func product(_ a: Value, _ b: Value) -> Value { apply(ElementwiseProduct(), to: [a, b]) }

    /// The values joined along the leading axis of each sample.
    public func concatenate(_ values: [Value]) -> Value { apply(Concatenate(), to: values) }

    /// The matrix product op(a) op(b) of two per-sample matrices.
    public func matrixProduct(_ a: Value, _ b: Value, transposeA: Bool = false, transposeB: Bool = false) -> Value {
        apply(MatrixProduct(transposeA: transposeA, transposeB: transposeB), to: [a, b])
    }
}
