import _FunnelKernels
import CBLAS
import Foundation

/// What the running CPU can do (the instruction-set extensions Funnel and OpenBLAS care about).
public struct CPUFeatures: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let sse42 = CPUFeatures(rawValue: UInt32(FK_CPU_SSE42))
    public static let avx = CPUFeatures(rawValue: UInt32(FK_CPU_AVX))
    public static let avx2 = CPUFeatures(rawValue: UInt32(FK_CPU_AVX2))
    public static let fma = CPUFeatures(rawValue: UInt32(FK_CPU_FMA))
    public static let f16c = CPUFeatures(rawValue: UInt32(FK_CPU_F16C))
    public static let avx512f = CPUFeatures(rawValue: UInt32(FK_CPU_AVX512F))
    public static let avx512bw = CPUFeatures(rawValue: UInt32(FK_CPU_AVX512BW))
    public static let avx512vl = CPUFeatures(rawValue: UInt32(FK_CPU_AVX512VL))
    public static let avx512dq = CPUFeatures(rawValue: UInt32(FK_CPU_AVX512DQ))
    public static let avx512vnni = CPUFeatures(rawValue: UInt32(FK_CPU_AVX512VNNI))
    public static let avx512bf16 = CPUFeatures(rawValue: UInt32(FK_CPU_AVX512BF16))
    public static let avx512fp16 = CPUFeatures(rawValue: UInt32(FK_CPU_AVX512FP16))

    /// The features of the CPU this process runs on.
    public static var current: CPUFeatures { CPUFeatures(rawValue: UInt32(fk_cpu_features())) }

    /// AVX-512 as SkylakeX-class kernels use it (F, BW, VL, DQ).
    public var hasAVX512: Bool { isSuperset(of: [.avx512f, .avx512bw, .avx512vl, .avx512dq]) }
    public var hasAVX2FMA: Bool { isSuperset(of: [.avx2, .fma]) }

    public var description: String {
        let names: [(CPUFeatures, String)] = [(.sse42, "sse4.2"), (.avx, "avx"), (.avx2, "avx2"), (.fma, "fma"), (.f16c, "f16c"),
                                              (.avx512f, "avx512f"), (.avx512bw, "avx512bw"), (.avx512vl, "avx512vl"),
                                              (.avx512dq, "avx512dq"), (.avx512vnni, "avx512vnni"), (.avx512bf16, "avx512bf16"),
                                              (.avx512fp16, "avx512fp16")]
        return names.filter { contains($0.0) }.map(\.1).joined(separator: " ")
    }
}

/// OpenBLAS's kernel selection. OpenBLAS picks its kernels ("core") once, when it loads,
/// from the CPU it recognizes; an older OpenBLAS (Debian's 0.3.21) does not recognize
/// recent Intel CPUs and falls back to SSE3 (Prescott) kernels, a quarter of the sgemm
/// speed the CPU has. `OPENBLAS_CORETYPE` set before it loads overrides the choice.
///
/// The `funnel` binary checks at start and, when the core is far below the CPU, starts
/// itself again with the better core set (`FUNNEL_BLAS_AUTO=0` turns this off; a value
/// the user set is never overridden). A library user does the same by setting
/// `OPENBLAS_CORETYPE` to `BLASCore.recommended()` before starting the process.
public enum BLASCore {
    /// Cores with AVX-512 kernels, and cores with at least AVX2 ones (OpenBLAS's names).
    static let avx512Cores: Set<String> = ["SkylakeX", "Cooperlake", "SapphireRapids"]
    static let avx2Cores: Set<String> = avx512Cores.union(["Haswell", "Zen"])

    /// The core OpenBLAS chose in this process ("Prescott", "Haswell", "SkylakeX", ...).
    public static var current: String { String(cString: openblas_get_corename()) }

    /// OpenBLAS's build description (version, DYNAMIC_ARCH, threads).
    public static var configuration: String { String(cString: openblas_get_config()) }

    /// The core to ask for when `core` is below what `cpu` can run (nil: it is not).
    /// - Complexity: O(1).
    public static func recommended(core: String, cpu: CPUFeatures) -> String? {
        if cpu.hasAVX512 { return avx512Cores.contains(core) ? nil : "SkylakeX" }
        if cpu.hasAVX2FMA { return avx2Cores.contains(core) ? nil : "Haswell" }
        return nil
    }

    /// `recommended(core:cpu:)` for this process.
    public static func recommended() -> String? { recommended(core: current, cpu: .current) }
}

/// Which bodies Funnel's own C kernels run (chosen once at load from the CPU).
public enum Kernels {
    /// "avx512+vnni" (as avx512, with vpdpwssd in the int8 distances), "avx512" (float,
    /// half and int8 distances; the rest AVX2+FMA), "avx2+fma" or "scalar".
    /// `FUNNEL_SIMD=scalar|avx2|avx512|avx512vnni` caps it at load.
    public static var simdLevel: String { ["scalar", "avx2+fma", "avx512", "avx512+vnni"][Int(max(0, min(3, fk_simd_level())))] }
}

/// What a measurement ran on, recorded beside every benchmark figure: OpenBLAS's core and
/// threads, the SIMD level of Funnel's kernels, the CPU's features.
public struct MachineReport: Codable, Sendable, Equatable {
    public var blasCore: String
    public var blasThreads: Int
    public var kernels: String
    public var cpuFeatures: String

    public static var current: MachineReport {
        MachineReport(blasCore: BLASCore.current, blasThreads: BLAS.threads, kernels: Kernels.simdLevel,
                      cpuFeatures: CPUFeatures.current.description)
    }

    /// As JSON-ready values.
    public var json: [String: Any] {
        ["blas_core": blasCore, "blas_threads": blasThreads, "kernels": kernels, "cpu_features": cpuFeatures]
    }

    enum CodingKeys: String, CodingKey {
        case blasCore = "blas_core", blasThreads = "blas_threads", kernels, cpuFeatures = "cpu_features"
    }
}
