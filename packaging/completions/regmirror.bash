_regmirror() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="regmirror"
                ;;
            regmirror,apply)
                cmd="regmirror__subcmd__apply"
                ;;
            regmirror,check)
                cmd="regmirror__subcmd__check"
                ;;
            regmirror,completions)
                cmd="regmirror__subcmd__completions"
                ;;
            regmirror,diff)
                cmd="regmirror__subcmd__diff"
                ;;
            regmirror,help)
                cmd="regmirror__subcmd__help"
                ;;
            regmirror,man)
                cmd="regmirror__subcmd__man"
                ;;
            regmirror,resolve)
                cmd="regmirror__subcmd__resolve"
                ;;
            regmirror,revert)
                cmd="regmirror__subcmd__revert"
                ;;
            regmirror,run)
                cmd="regmirror__subcmd__run"
                ;;
            regmirror,show)
                cmd="regmirror__subcmd__show"
                ;;
            regmirror__subcmd__help,apply)
                cmd="regmirror__subcmd__help__subcmd__apply"
                ;;
            regmirror__subcmd__help,check)
                cmd="regmirror__subcmd__help__subcmd__check"
                ;;
            regmirror__subcmd__help,completions)
                cmd="regmirror__subcmd__help__subcmd__completions"
                ;;
            regmirror__subcmd__help,diff)
                cmd="regmirror__subcmd__help__subcmd__diff"
                ;;
            regmirror__subcmd__help,help)
                cmd="regmirror__subcmd__help__subcmd__help"
                ;;
            regmirror__subcmd__help,man)
                cmd="regmirror__subcmd__help__subcmd__man"
                ;;
            regmirror__subcmd__help,resolve)
                cmd="regmirror__subcmd__help__subcmd__resolve"
                ;;
            regmirror__subcmd__help,revert)
                cmd="regmirror__subcmd__help__subcmd__revert"
                ;;
            regmirror__subcmd__help,run)
                cmd="regmirror__subcmd__help__subcmd__run"
                ;;
            regmirror__subcmd__help,show)
                cmd="regmirror__subcmd__help__subcmd__show"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        regmirror)
            opts="-h -V --help --version diff apply revert show run resolve check completions man help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__apply)
            opts="-h --secret-file --secret-dir --secret-name --secret-namespace --config --certs-dir --state-dir --mode --strict-airgap --dial-timeout --runtime --crio-socket --crio-pid-file --crio-unit --registries-conf-d --containers-certs-dir --auth-file --reload --containerd-unit --containerd-version --containerd-socket --host-pid --health-timeout --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --secret-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-namespace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mode)
                    COMPREPLY=($(compgen -W "auto legacy hosts" -- "${cur}"))
                    return 0
                    ;;
                --strict-airgap)
                    COMPREPLY=($(compgen -W "true false" -- "${cur}"))
                    return 0
                    ;;
                --dial-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runtime)
                    COMPREPLY=($(compgen -W "containerd crio podman auto" -- "${cur}"))
                    return 0
                    ;;
                --crio-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-pid-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-unit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --registries-conf-d)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containers-certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-unit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-version)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --host-pid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --health-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__check)
            opts="-o -h --secret-file --secret-dir --from-disk --secret-name --secret-namespace --config --certs-dir --containerd-version --containerd-socket --host-pid --strict-airgap --dial-timeout --image --timeout --output --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --secret-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-namespace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-version)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --host-pid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --strict-airgap)
                    COMPREPLY=($(compgen -W "true false" -- "${cur}"))
                    return 0
                    ;;
                --dial-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --image)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__completions)
            opts="-h --help bash elvish fish powershell zsh"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__diff)
            opts="-o -h --secret-file --secret-dir --secret-name --secret-namespace --config --certs-dir --state-dir --mode --strict-airgap --dial-timeout --runtime --crio-socket --crio-pid-file --crio-unit --registries-conf-d --containers-certs-dir --auth-file --from-cluster --kubeconfig --context --request-timeout --containerd-version --containerd-socket --host-pid --output --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --secret-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-namespace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mode)
                    COMPREPLY=($(compgen -W "auto legacy hosts" -- "${cur}"))
                    return 0
                    ;;
                --strict-airgap)
                    COMPREPLY=($(compgen -W "true false" -- "${cur}"))
                    return 0
                    ;;
                --dial-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runtime)
                    COMPREPLY=($(compgen -W "containerd crio podman auto" -- "${cur}"))
                    return 0
                    ;;
                --crio-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-pid-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-unit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --registries-conf-d)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containers-certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kubeconfig)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --request-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-version)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --host-pid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help)
            opts="diff apply revert show run resolve check completions man help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__apply)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__check)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__completions)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__diff)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__man)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__resolve)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__revert)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__run)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__help__subcmd__show)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__man)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__resolve)
            opts="-o -h --config --certs-dir --containerd-version --containerd-socket --host-pid --runtime --crio-socket --crio-pid-file --crio-unit --registries-conf-d --containers-certs-dir --auth-file --registries-conf --output --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-version)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --host-pid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runtime)
                    COMPREPLY=($(compgen -W "containerd crio podman auto" -- "${cur}"))
                    return 0
                    ;;
                --crio-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-pid-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-unit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --registries-conf-d)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containers-certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --registries-conf)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__revert)
            opts="-h --config --certs-dir --state-dir --reload --containerd-unit --containerd-version --containerd-socket --host-pid --health-timeout --runtime --crio-socket --crio-pid-file --crio-unit --registries-conf-d --containers-certs-dir --auth-file --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-unit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-version)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --host-pid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --health-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runtime)
                    COMPREPLY=($(compgen -W "containerd crio podman auto" -- "${cur}"))
                    return 0
                    ;;
                --crio-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-pid-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-unit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --registries-conf-d)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containers-certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__run)
            opts="-h --secret-file --secret-dir --secret-name --secret-namespace --kubeconfig --config --certs-dir --state-dir --mode --strict-airgap --dial-timeout --runtime --crio-socket --crio-pid-file --crio-unit --registries-conf-d --containers-certs-dir --auth-file --reload --containerd-unit --containerd-version --containerd-socket --host-pid --health-timeout --restart-jitter --restart-budget --restart-lease --debounce --resync --on-delete --listen --log-format --node-name --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --secret-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-namespace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kubeconfig)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mode)
                    COMPREPLY=($(compgen -W "auto legacy hosts" -- "${cur}"))
                    return 0
                    ;;
                --strict-airgap)
                    COMPREPLY=($(compgen -W "true false" -- "${cur}"))
                    return 0
                    ;;
                --dial-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runtime)
                    COMPREPLY=($(compgen -W "containerd crio podman auto" -- "${cur}"))
                    return 0
                    ;;
                --crio-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-pid-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crio-unit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --registries-conf-d)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containers-certs-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reload)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-unit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-version)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --host-pid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --health-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --restart-jitter)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --restart-budget)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --restart-lease)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --debounce)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --resync)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --on-delete)
                    COMPREPLY=($(compgen -W "revert keep" -- "${cur}"))
                    return 0
                    ;;
                --listen)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-format)
                    COMPREPLY=($(compgen -W "plain json" -- "${cur}"))
                    return 0
                    ;;
                --node-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        regmirror__subcmd__show)
            opts="-h --secret-file --secret-dir --secret-name --secret-namespace --containerd-version --containerd-socket --host-pid --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --secret-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-namespace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-version)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --containerd-socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --host-pid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _regmirror -o nosort -o bashdefault -o default regmirror
else
    complete -F _regmirror -o bashdefault -o default regmirror
fi
