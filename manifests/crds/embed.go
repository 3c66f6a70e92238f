// Package crds embeds the CustomResourceDefinitions that `make generate`
// writes beside this file, so that programs (kubectl rollouts lint) validate
// objects against exactly the schemas the API server is given. controller-gen
// only writes the YAML files here; this file is not generated.
package crds

import "embed"

// FS holds the generated CRD files, rollouts.kubeseed.io_<plural>.yaml.
//
//go:embed rollouts.kubeseed.io_*.yaml
var FS embed.FS
