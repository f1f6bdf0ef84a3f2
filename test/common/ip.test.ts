import t from 'tap';
import { stripV4Mapped } from '../../common/ip.ts';

t.test('stripV4Mapped unwraps IPv4-mapped IPv6 addresses only', (t) => {
  t.equal(stripV4Mapped('::ffff:10.244.1.5'), '10.244.1.5');
  t.equal(stripV4Mapped('::FFFF:10.244.1.5'), '10.244.1.5', 'the prefix is case-insensitive, as IPv6 text is');
  t.equal(stripV4Mapped('10.244.1.5'), '10.244.1.5');
  t.equal(stripV4Mapped('fd00::1'), 'fd00::1');
  t.equal(stripV4Mapped('::ffff:abcd'), '::ffff:abcd', 'not a dotted IPv4 tail');
  t.equal(stripV4Mapped('::ffff:'), '::ffff:');
  t.equal(stripV4Mapped(''), '');
  t.end();
});
