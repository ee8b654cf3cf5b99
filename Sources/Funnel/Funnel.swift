// `import Funnel` gives the whole stack; each stage module also stands alone.
@_exported import LinearAlgebra
@_exported import Collectives
@_exported import Persistence
@_exported import Datasets
@_exported import ExactSearch
@_exported import HNSW
@_exported import GBDT
@_exported import TwoTower
@_exported import Candidates
@_exported import Rerank
@_exported import TextSearch
@_exported import Features
@_exported import Registry
@_exported import Serving
@_exported import Engine
