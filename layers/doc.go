// Package layers owns how kiln writes the layer blobs of the images it
// exports: how a new gzip layer is compressed, and the reuse of layers
// already rewritten for a SOURCE_DATE_EPOCH.
//
// BuildKit compresses a new gzip layer with Go's compress/gzip on one core.
// kiln compresses it in parallel instead (klauspost/pgzip with a fixed block
// size, so the bytes, and the digest, are the same for the same input on
// any number of cores), or, when a build asks for it (GzipBuildkitd), byte
// for byte as buildkitd does. Layers that neither compressed, such as the
// base image's, are kept as they are in both modes, as BuildKit keeps them.
//
// With rewrite-timestamp, BuildKit decompresses every layer above the base
// image, rewrites the times in its tar headers and compresses it again at
// every export, even when nothing changed. kiln remembers what each rewrite
// produced in labels of the source blob in the content store, checks that
// the remembered blob is still there and says what it is, and uses it
// instead of rewriting again.
//
// Nothing of BuildKit is copied: Worker wraps BuildKit's worker and returns
// its image, oci and docker exporters wrapped, and those hand BuildKit's
// image writer cache references whose GetRemotes asks for kiln's
// compression and returns rewritten layers (see Worker).
package layers
