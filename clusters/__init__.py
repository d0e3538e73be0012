"""Ray cluster definitions (launcher YAMLs, KubeRay manifests, runtime_env) and ``local_cluster``, a
multi-node Ray cluster on one machine."""
