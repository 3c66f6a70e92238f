// Command kubectl-rollouts is the kubectl plugin: `kubectl rollouts …`.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubeseed/rollouts/pkg/cli"
)

func main() {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	if err := cli.NewRootCommand(streams).Execute(); err != nil {
		os.Exit(cli.ExitCode(err))
	}
}
