// Package engine runs BuildKit inside the kiln process, on the store kiln's
// global options select (Config): a containerd, or kiln's embedded store.
//
// The choice is made once (Config.Selection, Config.backend); a backend
// interface with one implementation per store opens it, picks the
// snapshotter, takes the locks a build holds, describes BuildKit's worker
// (a base.WorkerOpt for one base.NewWorker, as BuildKit's own workers do)
// and says what kiln info shows. Everything around it is written once:
//
//   - Start opens the store, takes the state directory's lock (state.go,
//     lock.go), removes what a killed kiln left (sweep.go, tmpdir.go,
//     executor_linux.go), moves an earlier kiln's build cache into its
//     namespace's state directory, and starts the worker, the controller
//     and a BuildKit client connected to them over memory (engine.go);
//   - Engine.CollectGarbage applies buildkitd's garbage collection policy
//     after a build (gc.go);
//   - DiskUsage and Prune (kiln du, kiln prune) start only the worker, and
//     the controller to prune through (cache.go);
//   - OpenStore opens the store for the image commands, and Describe tells
//     kiln info what it would use (info.go).
//
// The engine knows nothing of flags, output formats or one build's options:
// package builder orchestrates builds on it, and cmd/kiln presents results.
package engine
