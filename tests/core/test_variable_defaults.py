"""Core -- switches for new Variables: ``var_defaults`` and eager sharding, against Flax 0.12.8."""

import jax.numpy as jnp
import pytest

import nnx_edu as nnx


# -- var_defaults ---------------------------------------------------------------------
def test_var_defaults_reports_the_same_defaults_as_flax(fnnx):
  ours, theirs = nnx.var_defaults(), fnnx.var_defaults()
  assert repr(ours) == repr(theirs) == 'VarDefaults(hijax=False, ref=False)'
  assert dict(ours) == dict(theirs) and len(ours) == len(theirs)
  assert (ours.hijax, ours['ref']) == (theirs.hijax, theirs['ref'])


@pytest.mark.parametrize('setting', [{'hijax': False}, {'ref': False},
                                     {'hijax': False, 'ref': False}])
@pytest.mark.parametrize('use', ['with', 'decorator'])
def test_var_defaults_set_to_false_works_as_with_block_and_decorator_as_in_flax(setting, use, fnnx):
  def seen(lib):
    if use == 'with':
      with lib.var_defaults(**setting):
        inside = dict(lib.var_defaults())
    else:
      inside = lib.var_defaults(**setting)(lambda: dict(lib.var_defaults()))()
    return inside, dict(lib.var_defaults())

  assert seen(nnx) == seen(fnnx)


@pytest.mark.parametrize('name', ['hijax', 'ref'])
def test_var_defaults_true_raises_and_says_what_to_use_instead(name):
  with pytest.raises(NotImplementedError, match=rf'var_defaults\({name}=True\): nnx_edu has no '
                     rf'{name} Variables .* Pass Modules and Variables to the nnx transforms'):
    nnx.var_defaults(**{name: True})


# -- the eager sharding switch ----------------------------------------------------------
@pytest.mark.parametrize('use', ['call', 'with', 'decorator'])
def test_use_eager_sharding_changes_the_setting_like_flax(use, fnnx):
  def trace(lib):
    seen = [lib.using_eager_sharding()]
    if use == 'call':
      lib.use_eager_sharding(False)
      seen.append(lib.using_eager_sharding())
      lib.use_eager_sharding(True)
    elif use == 'with':
      with lib.use_eager_sharding(False):
        seen.append(lib.using_eager_sharding())
    else:
      seen.append(lib.use_eager_sharding(False)(lib.using_eager_sharding)())
    return seen + [lib.using_eager_sharding()]

  assert trace(nnx) == trace(fnnx) != [True] * 3


def test_a_variable_made_with_eager_sharding_off_remembers_it_in_its_repr_like_flax(fnnx):
  def make(lib):
    with lib.use_eager_sharding(False):
      return lib.Param(jnp.ones(2), out_sharding=('data',)), lib.BatchStat(jnp.zeros(1))

  for ours, theirs in zip(make(nnx), make(fnnx)):
    assert repr(ours) == repr(theirs)
  assert repr(nnx.Param(1.0)) == repr(fnnx.Param(1.0))  # on: nothing shown
