# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_regmirror_global_optspecs
    string join \n h/help V/version
end

function __fish_regmirror_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_regmirror_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_regmirror_using_subcommand
    set -l cmd (__fish_regmirror_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c regmirror -n "__fish_regmirror_needs_command" -s h -l help -d 'Print help'
complete -c regmirror -n "__fish_regmirror_needs_command" -s V -l version -d 'Print version'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "diff" -d 'Print a unified diff of every file apply would write (exit 0: no change, 1: changes, 2: error)'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "apply" -d 'Write the configuration (exit 0: applied or unchanged, 2: error)'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "revert" -d 'Remove everything regmirror wrote and restore what it replaced'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "show" -d 'Print the validated spec (PASSWORD as ***) and the containerd it would be rendered for'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "run" -d 'The agent: watch the Secret and the files, reconcile, reload containerd'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "resolve" -d 'Print the URLs containerd (or, with --runtime podman|crio, containers/image) will try for IMAGE, in order, from the files on disk now'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "check" -d 'Probe every mirror endpoint (GET /v2/ with the CA and credentials containerd would use) and, with --image, which host would serve each image (exit 0: all fine, 1: something failed, 2: bad input)'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "completions" -d 'Print shell completions (bash, zsh, fish, elvish, powershell) generated from these flags'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "man" -d 'Print the man page (roff) generated from these flags'
complete -c regmirror -n "__fish_regmirror_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l secret-file -d 'A Secret manifest (YAML, one or more documents; stringData and/or base64 data)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l secret-dir -d 'A directory of key files, as kubelet mounts a Secret volume' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l secret-name -d 'The Secret\'s name (picks the document in a multi-document manifest)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l secret-namespace -d 'The Secret\'s namespace (a manifest document naming another namespace is skipped)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l config -d 'containerd\'s config.toml' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l certs-dir -d 'Where hosts.toml directories and CA files go (used as config_path in hosts mode; for `resolve`, containerd ≥ 2.2\'s default when config.toml sets no config_path)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l state-dir -d 'Where regmirror keeps its state file and lock' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l mode -r -f -a "auto\t'hosts with containerd ≥ 2.0, or when config `version` ≥ 3 or `config_path` is set; legacy otherwise'
legacy\t'`registry.mirrors` / `registry.configs` in config.toml (needs a containerd restart)'
hosts\t'`config_path` + `certs.d/<host>/hosts.toml` (file edits need no restart)'"
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l strict-airgap -d 'Strict air-gap: no fallback to the upstream registry (hosts mode; the last mirror endpoint becomes hosts.toml\'s `server`). A pull the mirror cannot serve fails' -r -f -a "true\t''
false\t''"
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l dial-timeout -d 'hosts.toml `dial_timeout` for every mirror host, so a dead mirror fails over fast (written for containerd ≥ 2.1, which reads it; "0s" writes none)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l runtime -d 'Which runtime\'s configuration to use (auto: detected, and said why on stderr)' -r -f -a "containerd\t'containerd\'s config.toml / certs.d hosts.toml'
crio\t'CRI-O: containers-registries.conf (as podman), then CRI-O\'s reload (SIGHUP)'
podman\t'containers-registries.conf (Podman, CRI-O): a registries.conf.d drop-in, certs.d, auth file'
auto\t'containerd if its socket exists, else crio if its socket exists, else podman if on PATH'"
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l crio-socket -d 'CRI-O\'s socket (--runtime auto picks crio when it exists and containerd\'s does not)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l crio-pid-file -d '--runtime crio with --reload auto|systemd: send SIGHUP to the PID in this file instead of `systemctl reload <--crio-unit>`' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l crio-unit -d '--runtime crio: the systemd unit `systemctl reload` reloads' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l registries-conf-d -d '--runtime podman: the drop-in directory (regmirror writes 50-regmirror.conf there)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l containers-certs-dir -d '--runtime podman: where CA_CERT goes (`<DIR>/<DOMAIN>/ca.crt`)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l auth-file -d '--runtime podman: the containers-auth.json file regmirror merges its credentials into' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l kubeconfig -d 'kubeconfig for --from-cluster (default: $KUBECONFIG, ~/.kube/config, then in-cluster)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l context -d 'The kubeconfig context for --from-cluster (default: its current context)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l request-timeout -d 'How long the GET may take' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l containerd-version -d 'containerd\'s version (e.g. 2.1.9): decide for it without asking the node (offline `diff`); `unknown` decides from config.toml alone. Unset: CRI Version over --containerd-socket, then `containerd --version`' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l containerd-socket -d 'containerd\'s CRI socket (version, health check, load verification)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l host-pid -d 'Run systemctl and `containerd --version` in the namespaces of this PID (1 = the host, from a hostPID pod; 0 = never enter other namespaces)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -s o -l output -d 'text (a unified diff), or json (schema regmirror.diff/v1, documented in the README)' -r -f -a "text\t''
json\t''"
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -l from-cluster -d 'Read the Secret from the cluster (one GET, the admin\'s own kubeconfig) instead of a file'
complete -c regmirror -n "__fish_regmirror_using_subcommand diff" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l secret-file -d 'A Secret manifest (YAML, one or more documents; stringData and/or base64 data)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l secret-dir -d 'A directory of key files, as kubelet mounts a Secret volume' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l secret-name -d 'The Secret\'s name (picks the document in a multi-document manifest)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l secret-namespace -d 'The Secret\'s namespace (a manifest document naming another namespace is skipped)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l config -d 'containerd\'s config.toml' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l certs-dir -d 'Where hosts.toml directories and CA files go (used as config_path in hosts mode; for `resolve`, containerd ≥ 2.2\'s default when config.toml sets no config_path)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l state-dir -d 'Where regmirror keeps its state file and lock' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l mode -r -f -a "auto\t'hosts with containerd ≥ 2.0, or when config `version` ≥ 3 or `config_path` is set; legacy otherwise'
legacy\t'`registry.mirrors` / `registry.configs` in config.toml (needs a containerd restart)'
hosts\t'`config_path` + `certs.d/<host>/hosts.toml` (file edits need no restart)'"
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l strict-airgap -d 'Strict air-gap: no fallback to the upstream registry (hosts mode; the last mirror endpoint becomes hosts.toml\'s `server`). A pull the mirror cannot serve fails' -r -f -a "true\t''
false\t''"
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l dial-timeout -d 'hosts.toml `dial_timeout` for every mirror host, so a dead mirror fails over fast (written for containerd ≥ 2.1, which reads it; "0s" writes none)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l runtime -d 'Which runtime\'s configuration to use (auto: detected, and said why on stderr)' -r -f -a "containerd\t'containerd\'s config.toml / certs.d hosts.toml'
crio\t'CRI-O: containers-registries.conf (as podman), then CRI-O\'s reload (SIGHUP)'
podman\t'containers-registries.conf (Podman, CRI-O): a registries.conf.d drop-in, certs.d, auth file'
auto\t'containerd if its socket exists, else crio if its socket exists, else podman if on PATH'"
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l crio-socket -d 'CRI-O\'s socket (--runtime auto picks crio when it exists and containerd\'s does not)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l crio-pid-file -d '--runtime crio with --reload auto|systemd: send SIGHUP to the PID in this file instead of `systemctl reload <--crio-unit>`' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l crio-unit -d '--runtime crio: the systemd unit `systemctl reload` reloads' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l registries-conf-d -d '--runtime podman: the drop-in directory (regmirror writes 50-regmirror.conf there)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l containers-certs-dir -d '--runtime podman: where CA_CERT goes (`<DIR>/<DOMAIN>/ca.crt`)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l auth-file -d '--runtime podman: the containers-auth.json file regmirror merges its credentials into' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l reload -d 'none | auto | systemd | command:<cmd>. Default: none for apply/revert, auto for run' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l containerd-unit -d 'The systemd unit to restart' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l containerd-version -d 'containerd\'s version (e.g. 2.1.9): decide for it without asking the node (offline `diff`); `unknown` decides from config.toml alone. Unset: CRI Version over --containerd-socket, then `containerd --version`' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l containerd-socket -d 'containerd\'s CRI socket (version, health check, load verification)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l host-pid -d 'Run systemctl and `containerd --version` in the namespaces of this PID (1 = the host, from a hostPID pod; 0 = never enter other namespaces)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -l health-timeout -d 'How long containerd may take to answer CRI Version and Status after a restart' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l config -d 'containerd\'s config.toml' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l certs-dir -d 'Where hosts.toml directories and CA files go (used as config_path in hosts mode; for `resolve`, containerd ≥ 2.2\'s default when config.toml sets no config_path)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l state-dir -d 'Where regmirror keeps its state file and lock' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l reload -d 'none | auto | systemd | command:<cmd>. Default: none for apply/revert, auto for run' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l containerd-unit -d 'The systemd unit to restart' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l containerd-version -d 'containerd\'s version (e.g. 2.1.9): decide for it without asking the node (offline `diff`); `unknown` decides from config.toml alone. Unset: CRI Version over --containerd-socket, then `containerd --version`' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l containerd-socket -d 'containerd\'s CRI socket (version, health check, load verification)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l host-pid -d 'Run systemctl and `containerd --version` in the namespaces of this PID (1 = the host, from a hostPID pod; 0 = never enter other namespaces)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l health-timeout -d 'How long containerd may take to answer CRI Version and Status after a restart' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l runtime -d 'Which runtime\'s configuration to use (auto: detected, and said why on stderr)' -r -f -a "containerd\t'containerd\'s config.toml / certs.d hosts.toml'
crio\t'CRI-O: containers-registries.conf (as podman), then CRI-O\'s reload (SIGHUP)'
podman\t'containers-registries.conf (Podman, CRI-O): a registries.conf.d drop-in, certs.d, auth file'
auto\t'containerd if its socket exists, else crio if its socket exists, else podman if on PATH'"
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l crio-socket -d 'CRI-O\'s socket (--runtime auto picks crio when it exists and containerd\'s does not)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l crio-pid-file -d '--runtime crio with --reload auto|systemd: send SIGHUP to the PID in this file instead of `systemctl reload <--crio-unit>`' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l crio-unit -d '--runtime crio: the systemd unit `systemctl reload` reloads' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l registries-conf-d -d '--runtime podman: the drop-in directory (regmirror writes 50-regmirror.conf there)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l containers-certs-dir -d '--runtime podman: where CA_CERT goes (`<DIR>/<DOMAIN>/ca.crt`)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -l auth-file -d '--runtime podman: the containers-auth.json file regmirror merges its credentials into' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand revert" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c regmirror -n "__fish_regmirror_using_subcommand show" -l secret-file -d 'A Secret manifest (YAML, one or more documents; stringData and/or base64 data)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand show" -l secret-dir -d 'A directory of key files, as kubelet mounts a Secret volume' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand show" -l secret-name -d 'The Secret\'s name (picks the document in a multi-document manifest)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand show" -l secret-namespace -d 'The Secret\'s namespace (a manifest document naming another namespace is skipped)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand show" -l containerd-version -d 'containerd\'s version (e.g. 2.1.9): decide for it without asking the node (offline `diff`); `unknown` decides from config.toml alone. Unset: CRI Version over --containerd-socket, then `containerd --version`' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand show" -l containerd-socket -d 'containerd\'s CRI socket (version, health check, load verification)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand show" -l host-pid -d 'Run systemctl and `containerd --version` in the namespaces of this PID (1 = the host, from a hostPID pod; 0 = never enter other namespaces)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand show" -s h -l help -d 'Print help'
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l secret-file -d 'Watch a Secret manifest file instead of the Kubernetes API' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l secret-dir -d 'Watch a mounted Secret volume instead of the Kubernetes API' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l secret-name -d 'The Secret\'s name (picks the document in a multi-document manifest)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l secret-namespace -d 'The Secret\'s namespace (a manifest document naming another namespace is skipped)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l kubeconfig -d 'kubeconfig for the API source (default: in-cluster, then $KUBECONFIG / ~/.kube/config)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l config -d 'containerd\'s config.toml' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l certs-dir -d 'Where hosts.toml directories and CA files go (used as config_path in hosts mode; for `resolve`, containerd ≥ 2.2\'s default when config.toml sets no config_path)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l state-dir -d 'Where regmirror keeps its state file and lock' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l mode -r -f -a "auto\t'hosts with containerd ≥ 2.0, or when config `version` ≥ 3 or `config_path` is set; legacy otherwise'
legacy\t'`registry.mirrors` / `registry.configs` in config.toml (needs a containerd restart)'
hosts\t'`config_path` + `certs.d/<host>/hosts.toml` (file edits need no restart)'"
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l strict-airgap -d 'Strict air-gap: no fallback to the upstream registry (hosts mode; the last mirror endpoint becomes hosts.toml\'s `server`). A pull the mirror cannot serve fails' -r -f -a "true\t''
false\t''"
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l dial-timeout -d 'hosts.toml `dial_timeout` for every mirror host, so a dead mirror fails over fast (written for containerd ≥ 2.1, which reads it; "0s" writes none)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l runtime -d 'Which runtime\'s configuration to use (auto: detected, and said why on stderr)' -r -f -a "containerd\t'containerd\'s config.toml / certs.d hosts.toml'
crio\t'CRI-O: containers-registries.conf (as podman), then CRI-O\'s reload (SIGHUP)'
podman\t'containers-registries.conf (Podman, CRI-O): a registries.conf.d drop-in, certs.d, auth file'
auto\t'containerd if its socket exists, else crio if its socket exists, else podman if on PATH'"
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l crio-socket -d 'CRI-O\'s socket (--runtime auto picks crio when it exists and containerd\'s does not)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l crio-pid-file -d '--runtime crio with --reload auto|systemd: send SIGHUP to the PID in this file instead of `systemctl reload <--crio-unit>`' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l crio-unit -d '--runtime crio: the systemd unit `systemctl reload` reloads' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l registries-conf-d -d '--runtime podman: the drop-in directory (regmirror writes 50-regmirror.conf there)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l containers-certs-dir -d '--runtime podman: where CA_CERT goes (`<DIR>/<DOMAIN>/ca.crt`)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l auth-file -d '--runtime podman: the containers-auth.json file regmirror merges its credentials into' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l reload -d 'none | auto | systemd | command:<cmd>. Default: none for apply/revert, auto for run' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l containerd-unit -d 'The systemd unit to restart' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l containerd-version -d 'containerd\'s version (e.g. 2.1.9): decide for it without asking the node (offline `diff`); `unknown` decides from config.toml alone. Unset: CRI Version over --containerd-socket, then `containerd --version`' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l containerd-socket -d 'containerd\'s CRI socket (version, health check, load verification)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l host-pid -d 'Run systemctl and `containerd --version` in the namespaces of this PID (1 = the host, from a hostPID pod; 0 = never enter other namespaces)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l health-timeout -d 'How long containerd may take to answer CRI Version and Status after a restart' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l restart-jitter -d 'Random wait before a containerd restart, 0 to this (spreads restarts over a fleet)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l restart-budget -d 'Restart slots across the fleet: at most this many nodes restart containerd at once (coordination.k8s.io Leases in the Secret\'s namespace; needs NODE_NAME and the API; 0: no budget). A node whose restart is rolled back halts the rollout of that spec' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l restart-lease -d 'A restart slot\'s Lease duration: a holder that dies frees its slot after this long' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l debounce -d 'Quiet time that ends a burst of changes before reconciling' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l resync -d 'Periodic safety reconcile (reads local files only; writes nothing when unchanged); 0s: none' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l on-delete -r -f -a "revert\t'Remove what regmirror owns and restore what was there'
keep\t'Leave the last applied configuration in place'"
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l listen -d 'Address for /healthz, /readyz and /metrics ("off" to disable)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l log-format -r -f -a "plain\t'One readable line per event (journald adds the time)'
json\t'One JSON object per line (for pods)'"
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -l node-name -d 'The Node to publish Events and the spec-hash annotation on (downward API)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l config -d 'containerd\'s config.toml' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l certs-dir -d 'Where hosts.toml directories and CA files go (used as config_path in hosts mode; for `resolve`, containerd ≥ 2.2\'s default when config.toml sets no config_path)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l containerd-version -d 'containerd\'s version (e.g. 2.1.9): decide for it without asking the node (offline `diff`); `unknown` decides from config.toml alone. Unset: CRI Version over --containerd-socket, then `containerd --version`' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l containerd-socket -d 'containerd\'s CRI socket (version, health check, load verification)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l host-pid -d 'Run systemctl and `containerd --version` in the namespaces of this PID (1 = the host, from a hostPID pod; 0 = never enter other namespaces)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l runtime -d 'Which runtime\'s configuration to use (auto: detected, and said why on stderr)' -r -f -a "containerd\t'containerd\'s config.toml / certs.d hosts.toml'
crio\t'CRI-O: containers-registries.conf (as podman), then CRI-O\'s reload (SIGHUP)'
podman\t'containers-registries.conf (Podman, CRI-O): a registries.conf.d drop-in, certs.d, auth file'
auto\t'containerd if its socket exists, else crio if its socket exists, else podman if on PATH'"
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l crio-socket -d 'CRI-O\'s socket (--runtime auto picks crio when it exists and containerd\'s does not)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l crio-pid-file -d '--runtime crio with --reload auto|systemd: send SIGHUP to the PID in this file instead of `systemctl reload <--crio-unit>`' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l crio-unit -d '--runtime crio: the systemd unit `systemctl reload` reloads' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l registries-conf-d -d '--runtime podman: the drop-in directory (regmirror writes 50-regmirror.conf there)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l containers-certs-dir -d '--runtime podman: where CA_CERT goes (`<DIR>/<DOMAIN>/ca.crt`)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l auth-file -d '--runtime podman: the containers-auth.json file regmirror merges its credentials into' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -l registries-conf -d '--runtime podman|crio: the main registries.conf (read first; missing: skipped)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -s o -l output -d 'text, or json (schema regmirror.resolve/v1, or regmirror.resolve-podman/v1 with --runtime podman|crio; documented in the README)' -r -f -a "text\t''
json\t''"
complete -c regmirror -n "__fish_regmirror_using_subcommand resolve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l secret-file -d 'A Secret manifest (YAML, one or more documents; stringData and/or base64 data)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l secret-dir -d 'A directory of key files, as kubelet mounts a Secret volume' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l secret-name -d 'The Secret\'s name (picks the document in a multi-document manifest)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l secret-namespace -d 'The Secret\'s namespace (a manifest document naming another namespace is skipped)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l config -d 'containerd\'s config.toml' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l certs-dir -d 'Where hosts.toml directories and CA files go (used as config_path in hosts mode; for `resolve`, containerd ≥ 2.2\'s default when config.toml sets no config_path)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l containerd-version -d 'containerd\'s version (e.g. 2.1.9): decide for it without asking the node (offline `diff`); `unknown` decides from config.toml alone. Unset: CRI Version over --containerd-socket, then `containerd --version`' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l containerd-socket -d 'containerd\'s CRI socket (version, health check, load verification)' -r -F
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l host-pid -d 'Run systemctl and `containerd --version` in the namespaces of this PID (1 = the host, from a hostPID pod; 0 = never enter other namespaces)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l strict-airgap -d 'Strict air-gap: no fallback to the upstream registry (hosts mode; the last mirror endpoint becomes hosts.toml\'s `server`). A pull the mirror cannot serve fails' -r -f -a "true\t''
false\t''"
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l dial-timeout -d 'hosts.toml `dial_timeout` for every mirror host, so a dead mirror fails over fast (written for containerd ≥ 2.1, which reads it; "0s" writes none)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l image -d 'An image to look up: HEAD its manifest at each host containerd would try, in order (repeatable)' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l timeout -d 'Total time one probe may take (one endpoint, or one host of an image); connecting takes at most 3 s of it' -r
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -s o -l output -d 'text, or json (schema regmirror.check/v1, documented in the README)' -r -f -a "text\t''
json\t''"
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -l from-disk -d 'Check the files on disk (config.toml and the hosts directories, as `resolve` reads them) instead of a Secret'
complete -c regmirror -n "__fish_regmirror_using_subcommand check" -s h -l help -d 'Print help'
complete -c regmirror -n "__fish_regmirror_using_subcommand completions" -s h -l help -d 'Print help'
complete -c regmirror -n "__fish_regmirror_using_subcommand man" -s h -l help -d 'Print help'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "diff" -d 'Print a unified diff of every file apply would write (exit 0: no change, 1: changes, 2: error)'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "apply" -d 'Write the configuration (exit 0: applied or unchanged, 2: error)'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "revert" -d 'Remove everything regmirror wrote and restore what it replaced'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "show" -d 'Print the validated spec (PASSWORD as ***) and the containerd it would be rendered for'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "run" -d 'The agent: watch the Secret and the files, reconcile, reload containerd'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "resolve" -d 'Print the URLs containerd (or, with --runtime podman|crio, containers/image) will try for IMAGE, in order, from the files on disk now'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "check" -d 'Probe every mirror endpoint (GET /v2/ with the CA and credentials containerd would use) and, with --image, which host would serve each image (exit 0: all fine, 1: something failed, 2: bad input)'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "completions" -d 'Print shell completions (bash, zsh, fish, elvish, powershell) generated from these flags'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "man" -d 'Print the man page (roff) generated from these flags'
complete -c regmirror -n "__fish_regmirror_using_subcommand help; and not __fish_seen_subcommand_from diff apply revert show run resolve check completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
