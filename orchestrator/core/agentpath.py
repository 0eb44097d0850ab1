"""Where the agent is on a host: one rule, in POSIX sh, run by every script that needs it.

The probe (fleet/facts.py), bootstrap (playbooks/bootstrap.yml) and the job
(playbooks/dispatch.yml) each embed FIND_AGENT_SH and call `orch_find_agent WORD` on the
host itself, so they cannot disagree about a host: the same shell code decides, on the
same PATH and HOME, every time. (Provisioning should reuse it too.)

The rule, for the first word of `agent.command` / a host's `agent:` (the rest of the
words are arguments, passed as written):

1. `~` or `~/...` at its start means the login user's home ($HOME), as in workspace_root.
2. A word with a `/` is a path: it is used if it is an executable file, else not found.
3. A bare name is looked up on the session's PATH (`command -v`). A non-interactive SSH
   session's PATH rarely has the places Claude Code's installers use, so when the name
   is not on it, these are tried in order, first hit wins:
   `~/.local/bin/NAME` (the native installer), `~/.claude/local/NAME` (the older local
   install), `$(npm prefix -g)/bin/NAME` (npm's global prefix; only when npm is found).
4. Not found: the places looked at are reported (AGENT_LOOKED), so a person can see why.

The function sets AGENT_PATH (what to run), AGENT_FOUND_BY (`path`, `PATH`, the directory
it was found in, or `npm`) and AGENT_LOOKED, and returns 0 when found. It forks only for
`command -v` and, as the last resort, npm. Its own variables start with `oa_`.
"""

from __future__ import annotations

import shlex

from ..errors import UsageError
from . import shell

SEARCH_DIRS = ("~/.local/bin", "~/.claude/local")   # then npm's global bin, see above

FIND_AGENT_SH = r"""# orch_find_agent WORD: where the agent's program WORD is on this host (the rule of
# orchestrator/core/agentpath.py). Sets AGENT_PATH, AGENT_FOUND_BY, AGENT_LOOKED.
# shellcheck disable=SC2034  # the AGENT_* variables are its results, read by the caller
orch_find_agent() {
  AGENT_PATH='' AGENT_FOUND_BY='' AGENT_LOOKED=''
  oa_w=$1
  case $oa_w in
    \~) oa_w=$HOME ;;
    \~/*) oa_w=$HOME/${oa_w#\~/} ;;
  esac
  case $oa_w in
    '') AGENT_LOOKED='(the agent command is empty)'; return 1 ;;
    */*)
      if [ -f "$oa_w" ] && [ -x "$oa_w" ]; then AGENT_PATH=$oa_w; AGENT_FOUND_BY=path; return 0; fi
      AGENT_LOOKED="$oa_w (no executable file there)"; return 1 ;;
  esac
  if oa_p=$(command -v "$oa_w" 2>/dev/null) && [ -n "$oa_p" ]; then
    case $oa_p in /*) AGENT_PATH=$oa_p ;; *) AGENT_PATH=$oa_w ;; esac
    AGENT_FOUND_BY=PATH; return 0
  fi
  AGENT_LOOKED="PATH ($PATH)"
  for oa_d in "$HOME/.local/bin" "$HOME/.claude/local"; do
    if [ -f "$oa_d/$oa_w" ] && [ -x "$oa_d/$oa_w" ]; then
      AGENT_PATH=$oa_d/$oa_w; AGENT_FOUND_BY=$oa_d; return 0
    fi
    AGENT_LOOKED="$AGENT_LOOKED, $oa_d"
  done
  if command -v npm >/dev/null 2>&1; then
    oa_n=$(npm prefix -g 2>/dev/null </dev/null)
    if [ -n "$oa_n" ] && [ -f "$oa_n/bin/$oa_w" ] && [ -x "$oa_n/bin/$oa_w" ]; then
      AGENT_PATH=$oa_n/bin/$oa_w; AGENT_FOUND_BY=npm; return 0
    fi
    AGENT_LOOKED="$AGENT_LOOKED, ${oa_n:-(npm prefix -g failed)}/bin"
  else
    AGENT_LOOKED="$AGENT_LOOKED (and no npm for its global bin)"
  fi
  return 1
}
"""


def words(command: str) -> list[str]:
    """The agent command split as a shell would ("npx @anthropic-ai/claude-code", or a
    wrapper with arguments); a UsageError when it is empty or cannot be split."""
    try:
        out = shlex.split(command or "")
    except ValueError as exc:
        raise UsageError(f"agent command {command!r} cannot be split into words: {exc}",
                         hint="check the quotes in agent.command / the host's agent:") from None
    if not out:
        raise UsageError("the agent command is empty",
                         hint="set agent.command in orch.yml (default: claude) or the host's agent:")
    return out


def set_words_sh(command: str) -> str:
    """`set -- 'w1' 'w2' ...`: the command's words as the script's positional parameters,
    each quoted (the first keeps a leading ~ literal: orch_find_agent expands it)."""
    return "set -- " + " ".join(shell.quote(w) for w in words(command))
