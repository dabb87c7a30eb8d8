/// How a layer with weights and a bias draws its initial values.
public enum Initialization: String, Sendable, Codable {
    /// PyTorch's default for `nn.Linear` and `nn.Conv2d`: weights and bias uniform in ±1/√fan-in.
    case pytorch
    /// He et al. (2015), fan-in mode: weights normal with standard deviation √(2 / fan-in), bias zero. It keeps
    /// the activations' scale through ReLU layers, which a network without batch-norm needs.
    case kaimingNormal
    /// Glorot & Bengio (2010): weights uniform in ±√(6 / (fan-in + fan-out)), bias zero — TensorFlow's and
    /// Keras's default (`glorot_uniform`), so the networks of Reptile's and MAML's TensorFlow code start this way.
    case glorotUniform

    /// Fills `parameters` — `weights` weights followed by the bias — for a layer of fan-in `fanIn` and fan-out
    /// `fanOut` (a convolution's: its output channels times its kernel's area).
    func fill(_ parameters: UnsafeMutableBufferPointer<Float>, weights: Int, fanIn: Int, fanOut: Int, using random: inout RandomSource) {
        switch self {
        case .pytorch:
            let bound = 1 / Float(fanIn).squareRoot()
            for i in parameters.indices { parameters[i] = random.uniform(-bound, bound) }
        case .kaimingNormal:
            let std = (2 / Float(fanIn)).squareRoot()
            for i in parameters.indices { parameters[i] = i < weights ? std * random.normal() : 0 }
        case .glorotUniform:
            let bound = (6 / Float(fanIn + fanOut)).squareRoot()
            for i in parameters.indices { parameters[i] = i < weights ? random.uniform(-bound, bound) : 0 }
        }
    }
}
