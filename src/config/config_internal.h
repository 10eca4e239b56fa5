/* config_internal.h: pieces of config.c exposed for tests. */
#ifndef SPRINT_CONFIG_INTERNAL_H
#define SPRINT_CONFIG_INTERNAL_H
#include "sprint/config.h"
/* Checks required keys of any table (keys[i].def == NULL) against is_set flags. */
sp_status sp_config_check_required_in(const sp_config_key *keys, size_t n, const unsigned char *is_set,
                                      sp_error *err);
#endif
